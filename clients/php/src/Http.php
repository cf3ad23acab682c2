<?php
declare(strict_types=1);

namespace Shoal;

/**
 * A minimal HTTP/1.1 client over PHP streams (stream_socket_client), so the
 * client needs no extension (php-curl is often not installed). One request a
 * connection ("Connection: close"); chunked answers are decoded. It tells
 * "could not connect" (nothing sent: retry-safe) from "no answer in time" and
 * "connection broke" (delivery unknown), which the error kinds rely on.
 *
 * @internal used by Gateway
 */
final class Http
{
    /** The largest answer read; an answer over it is a bad_response (the gateway's own limit is 1 MiB). */
    public const MAX_ANSWER = 64 * 1024 * 1024;

    /**
     * @param array<string, string> $headers
     * @return array{0: int, 1: array<string, string>, 2: string} status, headers (lower-case names), body
     */
    public static function request(string $method, string $url, array $headers, ?string $body,
                                   float $connectTimeout, float $wait): array
    {
        $u = parse_url($url);
        if ($u === false || !isset($u['host']) || !in_array($u['scheme'] ?? '', ['http', 'https'], true)) {
            throw new \InvalidArgumentException("not an http(s) URL: $url");
        }
        $tls = $u['scheme'] === 'https';
        $port = $u['port'] ?? ($tls ? 443 : 80);
        $target = ($u['path'] ?? '/') . (isset($u['query']) ? '?' . $u['query'] : '');
        $deadline = microtime(true) + $wait;
        $ctx = stream_context_create(['ssl' => ['peer_name' => $u['host']]]);
        $errno = 0;
        $errstr = '';
        $sock = @stream_socket_client(($tls ? 'tls://' : 'tcp://') . $u['host'] . ':' . $port,
                                      $errno, $errstr, min($connectTimeout, $wait),
                                      STREAM_CLIENT_CONNECT, $ctx);
        if ($sock === false) {
            throw new ShoalException('unreachable', "cannot connect to {$u['host']}:$port: $errstr ($errno)", true);
        }
        try {
            $head = "$method $target HTTP/1.1\r\nHost: {$u['host']}:$port\r\nConnection: close\r\n";
            foreach ($headers as $name => $value) {
                $head .= "$name: $value\r\n";
            }
            $head .= 'Content-Length: ' . strlen($body ?? '') . "\r\n\r\n";
            self::writeAll($sock, $head . ($body ?? ''), $deadline);
            $raw = self::readAll($sock, $deadline, $wait);
        } finally {
            fclose($sock);
        }
        return self::parse($raw);
    }

    /** @param resource $sock */
    private static function writeAll($sock, string $data, float $deadline): void
    {
        while ($data !== '') {
            self::arm($sock, $deadline, 0.0);
            $n = @fwrite($sock, $data);
            if ($n === false || $n === 0) {
                throw new ShoalException('io', 'the connection to the gateway broke while sending', false);
            }
            $data = substr($data, $n);
        }
    }

    /** @param resource $sock */
    private static function readAll($sock, float $deadline, float $wait): string
    {
        $raw = '';
        while (!feof($sock)) {
            self::arm($sock, $deadline, $wait);
            $chunk = fread($sock, 65536);
            if (stream_get_meta_data($sock)['timed_out']) {
                throw self::late($wait);
            }
            if ($chunk === false) {
                throw new ShoalException('io', 'the connection to the gateway broke', false);
            }
            $raw .= $chunk;
            if (strlen($raw) > self::MAX_ANSWER) {
                throw new ShoalException('bad_response', 'an answer over ' . self::MAX_ANSWER . ' bytes', false);
            }
        }
        return $raw;
    }

    /** @param resource $sock */
    private static function arm($sock, float $deadline, float $wait): void
    {
        $left = $deadline - microtime(true);
        if ($left <= 0) {
            throw self::late($wait);
        }
        stream_set_timeout($sock, (int) $left, (int) (($left - (int) $left) * 1e6));
    }

    private static function late(float $wait): ShoalException
    {
        return new ShoalException('timeout', sprintf('no answer from the gateway within %.3f s', $wait), false);
    }

    /** @return array{0: int, 1: array<string, string>, 2: string} */
    private static function parse(string $raw): array
    {
        $end = strpos($raw, "\r\n\r\n");
        if ($end === false || !preg_match('#^HTTP/1\.[01] (\d{3})#', $raw, $m)) {
            throw new ShoalException('io', 'the connection to the gateway broke before a whole answer', false);
        }
        $headers = [];
        foreach (array_slice(explode("\r\n", substr($raw, 0, $end)), 1) as $line) {
            $colon = strpos($line, ':');
            if ($colon !== false) {
                $headers[strtolower(trim(substr($line, 0, $colon)))] = trim(substr($line, $colon + 1));
            }
        }
        $body = substr($raw, $end + 4);
        if (str_contains(strtolower($headers['transfer-encoding'] ?? ''), 'chunked')) {
            $body = self::dechunk($body);
        }
        return [(int) $m[1], $headers, $body];
    }

    private static function dechunk(string $body): string
    {
        $out = '';
        $pos = 0;
        while (true) {
            $eol = strpos($body, "\r\n", $pos);
            if ($eol === false) {
                throw new ShoalException('io', 'the answer ended inside a chunk', false);
            }
            $size = hexdec(trim(explode(';', substr($body, $pos, $eol - $pos))[0]));
            if ($size === 0) {
                return $out;
            }
            $out .= substr($body, $eol + 2, (int) $size);
            $pos = $eol + 2 + (int) $size + 2;
            if ($pos > strlen($body)) {
                throw new ShoalException('io', 'the answer ended inside a chunk', false);
            }
        }
    }
}
