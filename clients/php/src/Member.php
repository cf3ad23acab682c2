<?php
declare(strict_types=1);

namespace Shoal;

/**
 * The callback side of a member (docs/gateway.md section 5), for a script
 * served by PHP-FPM or `php -S`: the gateway's proxy POSTs each call there.
 *
 *     // callback.php
 *     require '/path/to/clients/php/src/autoload.php';
 *     Shoal\Member::handle(fn ($request, array $info) => ['echo' => $request]);
 *
 * The handler gets the decoded request and $info: kind ("call", "cast" or
 * "info"), deadline_ms (left when the call arrived; null for casts and
 * infos), caller and member (Pids or null), registration (the id). Its
 * return value is the reply (ignored for casts and infos). Throwing
 * Rejected rejects the request ("rejected" for the caller); any other
 * throwable is a crash ("crash", its class as remote_type).
 *
 * When SHOAL_CALLBACK_TOKEN is set (or a token is passed), a request whose
 * "Authorization: Bearer" is not that token is refused 401: register with
 * the same callback_token so only the gateway can call.
 *
 * Registration in the TTL mode is Gateway::register() / renew() /
 * deregister(); bin/shoal-member.php keeps one alive from the command line.
 */
final class Member
{
    /** Handles the current request (from $_SERVER and php://input) and writes the answer. */
    public static function handle(callable $handler, ?string $callbackToken = null): void
    {
        [$status, $body] = self::answer(
            $handler,
            $_SERVER['REQUEST_METHOD'] ?? 'GET',
            self::serverHeaders(),
            (string) file_get_contents('php://input'),
            $callbackToken ?? (getenv('SHOAL_CALLBACK_TOKEN') ?: null),
        );
        http_response_code($status);
        header('Content-Type: application/json');
        echo $body;
    }

    /**
     * The answer to one callback request, without touching globals (testable).
     *
     * @param array<string, string> $headers lower-case names
     * @return array{0: int, 1: string} status and body
     */
    public static function answer(callable $handler, string $method, array $headers, string $body,
                                  ?string $callbackToken): array
    {
        if ($method !== 'POST') {
            return [405, self::error('MethodNotAllowed', 'POST only')];
        }
        if ($callbackToken !== null
            && !hash_equals('Bearer ' . $callbackToken, $headers['authorization'] ?? '')) {
            return [401, self::error('Unauthorized', 'not this registration\'s gateway')];
        }
        try {
            $request = Json::decode($body);
            $info = [
                'kind' => $headers['shoal-kind'] ?? 'call',
                'deadline_ms' => isset($headers['shoal-deadline-ms']) ? (int) $headers['shoal-deadline-ms'] : null,
                'caller' => isset($headers['shoal-caller']) ? Pid::parse($headers['shoal-caller']) : null,
                'member' => isset($headers['shoal-member']) ? Pid::parse($headers['shoal-member']) : null,
                'registration' => $headers['shoal-registration'] ?? null,
            ];
        } catch (\InvalidArgumentException $e) {
            return [400, self::error('BadRequest', $e->getMessage())];
        }
        try {
            return [200, Json::encode($handler($request, $info))];
        } catch (Rejected $e) {
            return [422, json_encode(['error' => ['message' => $e->getMessage()]])];
        } catch (\Throwable $e) {
            return [500, self::error(get_class($e), $e->getMessage())];
        }
    }

    /** @return array<string, string> the request's headers, lower-case names */
    private static function serverHeaders(): array
    {
        $out = [];
        foreach ($_SERVER as $k => $v) {
            if (is_string($k) && str_starts_with($k, 'HTTP_')) {
                $out[strtolower(str_replace('_', '-', substr($k, 5)))] = (string) $v;
            }
        }
        return $out;
    }

    private static function error(string $type, string $message): string
    {
        return json_encode(['error' => ['type' => $type, 'message' => $message]], JSON_UNESCAPED_SLASHES)
            ?: '{"error": {"message": "unencodable error"}}';
    }
}
