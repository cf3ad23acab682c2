<?php
// The PHP client's test program, driven by tests/clients/test_php.py.
//
//   mapping                  one JSON document a line on stdin; prints per line
//                            "ok <tagged term> <re-encoded JSON>" or "refused <why>"
//   errors                   "STATUS<tab>BODY" a line on stdin (an error answer); prints per line
//                            "<kind> <retrySafe> <remoteType> <status> <member>"
//   call SCOPE GROUP JSON [STRATEGY]   prints "reply <JSON>" or "error <kind> <retrySafe> <remoteType> <status>"
//   tour                     members, callPid, cast, castPid, send and three errors on the
//                            cluster's "echo" and "slow" groups; prints one line each
declare(strict_types=1);

require dirname(__DIR__, 3) . '/clients/php/src/autoload.php';

use Shoal\Bin;
use Shoal\Crash;
use Shoal\Json;
use Shoal\KvMap;
use Shoal\Pid;

/** The term with its PHP type made explicit: ["int", 5], ["pid", node, c, s], ... */
function tag(mixed $t): array
{
    return match (true) {
        $t === null => ['null'],
        is_bool($t) => ['bool', $t],
        is_int($t) => ['int', $t],
        is_float($t) => ['float', $t],
        is_string($t) => ['str', $t],
        $t instanceof Bin => ['bin', $t->hex()],
        $t instanceof Pid => ['pid', $t->node, $t->creation, $t->serial],
        $t instanceof Crash => ['crash', $t->type, $t->message, $t->traceback],
        $t instanceof KvMap => ['map', array_map(fn ($p) => [tag($p[0]), tag($p[1])], $t->pairs)],
        $t instanceof \stdClass => mapTag(get_object_vars($t)),
        is_array($t) && array_is_list($t) => ['list', array_map('tag', $t)],
        is_array($t) => mapTag($t),
        default => throw new LogicException('a decoded term of an unexpected type ' . get_debug_type($t)),
    };
}

/** A map's keys are strings in the mapping, whatever PHP made of them. */
function mapTag(array $fields): array
{
    $pairs = [];
    foreach ($fields as $k => $v) {
        $pairs[] = [['str', (string) $k], tag($v)];
    }
    return ['map', $pairs];
}

switch ($argv[1]) {
    case 'mapping':
        while (($line = fgets(STDIN)) !== false) {
            try {
                $term = Json::decode($line);
                $tagged = json_encode(tag($term), JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_UNICODE
                                                  | JSON_THROW_ON_ERROR, 4096);
                echo "ok\t$tagged\t" . Json::encode($term) . "\n";
            } catch (InvalidArgumentException $e) {
                echo "refused\t" . strtr($e->getMessage(), "\t\n", '  ') . "\n";
            }
        }
        break;
    case 'errors':
        while (($line = fgets(STDIN)) !== false) {
            [$status, $body] = explode("\t", rtrim($line, "\n"), 2);
            $e = Shoal\Gateway::errorOf((int) $status, $body);
            echo "{$e->kind} " . json_encode($e->retrySafe) . ' ' . ($e->remoteType ?? 'null')
                . " {$e->status} " . ($e->member ?? 'null') . "\n";
        }
        break;
    case 'call':
        $gw = new Shoal\Gateway();
        $options = isset($argv[5]) ? ['strategy' => $argv[5]] : [];
        try {
            echo 'reply ' . Json::encode($gw->call($argv[2], $argv[3], Json::decode($argv[4]), $options)) . "\n";
        } catch (Shoal\ShoalException $e) {
            echo "error {$e->kind} " . json_encode($e->retrySafe) . ' ' . ($e->remoteType ?? 'null')
                . " {$e->status}\n";
        }
        break;
    case 'tour':
        $gw = new Shoal\Gateway();
        $m = $gw->members('default', 'echo');
        echo 'members ' . count($m['members']) . ' ' . count($m['routable']) . "\n";
        $first = $m['members'][0];
        echo 'callPid ' . Json::encode($gw->callPid($first, 'hi')) . "\n";
        $to = $gw->cast('default', 'echo', 'c');
        echo 'cast ' . json_encode(count(array_filter($m['members'], fn (Pid $p) => $p->equals($to))) > 0) . "\n";
        $gw->castPid($first, 'c');
        echo "castPid ok\n";
        $gw->send($first, 'i');
        echo "send ok\n";
        $errors = [
            'dead' => fn () => $gw->callPid(new Pid($first->node, $first->creation, 999999), 'x'),
            'empty' => fn () => $gw->call('default', 'nobody', 1),
            'slow' => fn () => $gw->call('default', 'slow', 2.0, ['timeout' => 0.5]),
            'tiny' => fn () => $gw->call('default', 'slow', 2.0, ['timeout' => 1e-9]),
        ];
        foreach ($errors as $name => $attempt) {
            try {
                $attempt();
                echo "$name no error\n";
            } catch (Shoal\ShoalException $e) {
                echo "$name {$e->kind} " . json_encode($e->retrySafe) . " {$e->status}\n";
            }
        }
        break;
    default:
        fwrite(STDERR, "unknown command {$argv[1]}\n");
        exit(2);
}
