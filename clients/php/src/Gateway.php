<?php
declare(strict_types=1);

namespace Shoal;

/**
 * A client of a shoal node's HTTP/JSON gateway, protocol v1 (docs/gateway.md).
 *
 *     $gw = new Shoal\Gateway('http://127.0.0.1:8080', $token);   // or new Gateway() with the env
 *     $reply = $gw->call('default', 'prices', ['sku' => 'A-1']);
 *
 * Timeouts: every call sends its timeout (Gateway::DEFAULT_TIMEOUT, 5 s, the
 * gateway's default, unless $options['timeout'] says otherwise) and the
 * gateway enforces it, answering "timeout"; the client itself gives up
 * ANSWER_GRACE later. Casts, sends, member look-ups and registrations wait at
 * most 5 s. Connecting waits at most CONNECT_TIMEOUT.
 *
 * Errors are ShoalExceptions; retry only when $e->retrySafe or the request is
 * idempotent. The client never retries by itself: a group call is already
 * retried on another member by the gateway when that is safe.
 */
final class Gateway
{
    public const PROTOCOL = 'v1';
    /** Seconds: the timeout of a call made without one, as the gateway's. */
    public const DEFAULT_TIMEOUT = 5.0;
    /** Seconds: the longest timeout the gateway accepts. */
    public const MAX_TIMEOUT = 300.0;
    /** Seconds past a call's timeout the client waits for the gateway's own answer. */
    public const ANSWER_GRACE = 2.0;
    /** Seconds connecting may take before the request fails "unreachable". */
    public const CONNECT_TIMEOUT = 5.0;

    private readonly string $base;
    private readonly string $token;

    /**
     * @param ?string $baseUrl the node's HTTP address; null reads SHOAL_GATEWAY_URL
     * @param ?string $token the gateway's bearer token; null reads SHOAL_GATEWAY_TOKEN
     */
    public function __construct(?string $baseUrl = null, ?string $token = null)
    {
        $url = $baseUrl ?? (getenv('SHOAL_GATEWAY_URL') ?: '');
        $tok = trim($token ?? (getenv('SHOAL_GATEWAY_TOKEN') ?: ''));
        if ($url === '') {
            throw new \InvalidArgumentException('no gateway URL: pass one or set SHOAL_GATEWAY_URL');
        }
        if ($tok === '') {
            throw new \InvalidArgumentException('no gateway token: pass one or set SHOAL_GATEWAY_TOKEN');
        }
        if (!preg_match('#^https?://#', $url)) {
            throw new \InvalidArgumentException("the gateway URL must be http:// or https://: $url");
        }
        $this->base = rtrim($url, '/');
        $this->token = $tok;
    }

    /**
     * Calls one member of a group and returns its reply.
     *
     * @param array{timeout?: float, strategy?: string, key?: string, idempotent?: bool} $options
     * @throws ShoalException no_members, crash, timeout, ... (docs/gateway.md section 4)
     */
    public function call(string $scope, string $group, mixed $request, array $options = []): mixed
    {
        [$query, $wait] = self::options($options);
        return $this->exchange('POST', '/v1/call/' . rawurlencode($scope) . '/' . rawurlencode($group) . $query,
                               Json::encode($request), $wait)[1];
    }

    /** Calls one process by pid; "noproc" when it is not alive. Options as for call(). */
    public function callPid(Pid|string $pid, mixed $request, array $options = []): mixed
    {
        [$query, $wait] = self::options($options);
        return $this->exchange('POST', '/v1/call/pid/' . rawurlencode((string) $pid) . $query,
                               Json::encode($request), $wait)[1];
    }

    /** Casts to one member of the group (no reply); returns the member it went to. */
    public function cast(string $scope, string $group, mixed $message): Pid
    {
        $answer = $this->exchange('POST', '/v1/cast/' . rawurlencode($scope) . '/' . rawurlencode($group),
                                  Json::encode($message), self::DEFAULT_TIMEOUT)[1];
        $member = is_array($answer) ? ($answer['member'] ?? null) : null;
        if (!$member instanceof Pid) {
            throw new ShoalException('bad_response', "a cast's answer names no member", false, 202);
        }
        return $member;
    }

    /** Casts to one process by pid (its handle_cast). */
    public function castPid(Pid|string $pid, mixed $message): void
    {
        $this->exchange('POST', '/v1/cast/pid/' . rawurlencode((string) $pid), Json::encode($message),
                        self::DEFAULT_TIMEOUT);
    }

    /** Sends a plain message to a process (its handle_info). */
    public function send(Pid|string $pid, mixed $message): void
    {
        $this->exchange('POST', '/v1/send/pid/' . rawurlencode((string) $pid), Json::encode($message),
                        self::DEFAULT_TIMEOUT);
    }

    /**
     * The group's members as the gateway's node sees them.
     *
     * @return array{scope: string, group: string, members: list<Pid>, routable: list<Pid>}
     */
    public function members(string $scope, string $group): array
    {
        $answer = $this->exchange('GET', '/v1/members/' . rawurlencode($scope) . '/' . rawurlencode($group),
                                  null, self::DEFAULT_TIMEOUT)[1];
        if (!is_array($answer) || !is_array($answer['members'] ?? null) || !is_array($answer['routable'] ?? null)) {
            throw new ShoalException('bad_response', 'members: not the documented object', false, 200);
        }
        return $answer;
    }

    /**
     * Registers a member in the TTL mode (for PHP-FPM and other short-lived
     * processes): the gateway starts a proxy that joins the group and POSTs
     * each call to $callbackUrl; renew() it before $ttl seconds pass, else the
     * proxy leaves the group and exits. See Member for the callback side.
     *
     * @param int $ttl seconds, 1 to 300
     * @param int $concurrency calls forwarded at a time, 1 to 1,000
     * @param ?string $callbackToken sent back as "Authorization: Bearer ..." with each call
     */
    public function register(string $scope, string $group, string $callbackUrl, int $ttl,
                             int $concurrency = 8, ?string $callbackToken = null, ?string $name = null): Registration
    {
        $body = ['scope' => $scope, 'group' => $group, 'callback_url' => $callbackUrl,
                 'concurrency' => $concurrency, 'ttl' => $ttl];
        if ($callbackToken !== null) {
            $body['callback_token'] = $callbackToken;
        }
        if ($name !== null) {
            $body['name'] = $name;
        }
        $answer = $this->exchange('POST', '/v1/members', Json::encode($body), self::DEFAULT_TIMEOUT)[1];
        return Registration::fromAnswer($answer);
    }

    /** Renews a TTL registration for another TTL; "not_found" when it has already ended. */
    public function renew(string $id): Registration
    {
        $answer = $this->exchange('PUT', '/v1/members/' . rawurlencode($id), '{}', self::DEFAULT_TIMEOUT)[1];
        return Registration::fromAnswer(is_array($answer) ? $answer + ['id' => $id] : $answer);
    }

    /**
     * Ends a registration gracefully: the proxy leaves the group and lets its
     * calls in flight finish; returns how many it drained.
     */
    public function deregister(string $id): int
    {
        $answer = $this->exchange('DELETE', '/v1/members/' . rawurlencode($id), null,
                                  self::MAX_TIMEOUT + self::ANSWER_GRACE)[1];
        return is_array($answer) && is_int($answer['drained'] ?? null) ? $answer['drained'] : 0;
    }

    /**
     * Sends one request; returns [status, decoded body] of a 2xx answer, else throws its error.
     *
     * @return array{0: int, 1: mixed}
     */
    private function exchange(string $method, string $path, ?string $body, float $wait): array
    {
        $headers = ['Authorization' => 'Bearer ' . $this->token, 'Accept' => 'application/json'];
        if ($body !== null) {
            $headers['Content-Type'] = 'application/json';
        }
        [$status, , $raw] = Http::request($method, $this->base . $path, $headers, $body,
                                          self::CONNECT_TIMEOUT, $wait);
        if (intdiv($status, 100) === 2) {
            try {
                return [$status, $raw === '' ? null : Json::decode($raw)];
            } catch (\InvalidArgumentException $e) {
                throw new ShoalException('bad_response', 'an answer the JSON mapping refuses: ' . $e->getMessage(),
                                         false, $status);
            }
        }
        throw self::errorOf($status, $raw);
    }

    /** The ShoalException of an error answer (section 4's body), or "bad_response". */
    public static function errorOf(int $status, string $raw): ShoalException
    {
        $e = json_decode($raw, true)['error'] ?? null;
        if (!is_array($e) || !is_string($e['kind'] ?? null)) {
            return new ShoalException('bad_response', 'an error answer without an error kind: ' . substr($raw, 0, 200),
                                      false, $status);
        }
        $member = null;
        if (is_array($e['member'] ?? null) && is_array($e['member']['$pid'] ?? null)) {
            [$node, $creation, $serial] = $e['member']['$pid'];
            $member = new Pid((string) $node, (int) $creation, (int) $serial);
        }
        return new ShoalException($e['kind'], (string) ($e['message'] ?? ''), ($e['retry_safe'] ?? false) === true,
                                  $status, is_string($e['remote_type'] ?? null) ? $e['remote_type'] : null, $member);
    }

    /** @return array{0: string, 1: float} the query string and how long to wait for the answer */
    private static function options(array $o): array
    {
        $unknown = array_diff(array_keys($o), ['timeout', 'strategy', 'key', 'idempotent']);
        if ($unknown !== []) {
            throw new \InvalidArgumentException('unknown call options: ' . implode(', ', $unknown));
        }
        $timeout = (float) ($o['timeout'] ?? self::DEFAULT_TIMEOUT);
        if ($timeout <= 0 || $timeout > self::MAX_TIMEOUT) {
            throw new \InvalidArgumentException("a timeout is more than 0 and at most 300 s: $timeout");
        }
        // Whole milliseconds, at least one: the gateway refuses a timeout of 0.
        $q = ['timeout' => sprintf('%.3F', max($timeout, 0.001))];
        if (isset($o['strategy'])) {
            $q['strategy'] = $o['strategy'];
        }
        if (isset($o['key'])) {
            $q['key'] = (string) $o['key'];
        }
        if (!empty($o['idempotent'])) {
            $q['idempotent'] = 'true';
        }
        return ['?' . http_build_query($q, '', '&', PHP_QUERY_RFC3986), $timeout + self::ANSWER_GRACE];
    }
}
