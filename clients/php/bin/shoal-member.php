<?php
// Keeps a TTL member registration alive for a PHP-FPM (or `php -S`) callback.
declare(strict_types=1);

require __DIR__ . '/../src/autoload.php';

const USAGE = <<<'TXT'
usage: php shoal-member.php --group GROUP --callback URL [--scope default] [--ttl 10]
                            [--concurrency 8] [--name NAME]

Registers the callback URL as a member of GROUP with the gateway (TTL mode),
prints "registered ID PID", and renews the registration every TTL/3 seconds.
SIGTERM or SIGINT ends it gracefully: the member leaves the group, its calls in
flight finish, and "drained N" is printed.

Environment: SHOAL_GATEWAY_URL and SHOAL_GATEWAY_TOKEN (the gateway);
SHOAL_CALLBACK_TOKEN, when set, is given as the registration's callback_token
(the callback script refuses requests without it).

Exit codes: 0 stopped by a signal after leaving the group; 2 bad usage;
3 the registration ended without us (the proxy exited because the callback
refused a connection, or the TTL lapsed while the gateway was unreachable);
4 the registration was refused.

TXT;

$opts = getopt('', ['group:', 'callback:', 'scope:', 'ttl:', 'concurrency:', 'name:', 'help']);
if (isset($opts['help']) || !isset($opts['group'], $opts['callback'])) {
    fwrite(isset($opts['help']) ? STDOUT : STDERR, USAGE);
    exit(isset($opts['help']) ? 0 : 2);
}
$ttl = (int) ($opts['ttl'] ?? 10);
$stop = false;
if (function_exists('pcntl_async_signals')) {
    pcntl_async_signals(true);
    pcntl_signal(SIGTERM, function () use (&$stop) { $stop = true; });
    pcntl_signal(SIGINT, function () use (&$stop) { $stop = true; });
} else {
    fwrite(STDERR, "shoal-member: no pcntl extension: a signal stops this at once, without draining\n");
}

$gw = new Shoal\Gateway();
try {
    $reg = $gw->register($opts['scope'] ?? 'default', $opts['group'], $opts['callback'], $ttl,
                         (int) ($opts['concurrency'] ?? 8), getenv('SHOAL_CALLBACK_TOKEN') ?: null,
                         $opts['name'] ?? null);
} catch (Shoal\ShoalException $e) {
    fwrite(STDERR, "shoal-member: registration refused: {$e->getMessage()}\n");
    exit(4);
}
echo "registered {$reg->id} {$reg->pid}\n";

$renewed = microtime(true);
$next = $renewed + $ttl / 3;
while (!$stop) {
    // Renew well before the TTL lapses; a signal ends the sleep early.
    $left = $next - microtime(true);
    if ($left > 0) {
        usleep((int) ($left * 1e6));
        continue;
    }
    try {
        $gw->renew($reg->id);
        $renewed = microtime(true);
        $next = $renewed + $ttl / 3;
    } catch (Shoal\ShoalException $e) {
        if ($e->kind === 'not_found') {
            fwrite(STDERR, "shoal-member: registration {$reg->id} ended: its proxy exited\n");
            exit(3);
        }
        if (microtime(true) - $renewed > $ttl) {
            fwrite(STDERR, "shoal-member: registration {$reg->id} lapsed: {$e->getMessage()}\n");
            exit(3);
        }
        fwrite(STDERR, "shoal-member: renewal failed, trying again: {$e->getMessage()}\n");
        $next = microtime(true) + 0.5;
    }
}
try {
    $drained = $gw->deregister($reg->id);
} catch (Shoal\ShoalException $e) {
    if ($e->kind !== 'not_found') {
        throw $e;
    }
    $drained = 0;
}
echo "drained $drained\n";
exit(0);
