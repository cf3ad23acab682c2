<?php
declare(strict_types=1);

namespace Shoal;

/**
 * A map whose keys are not all strings ({"$kv": [[key, value], ...]}): PHP
 * array keys can only be ints and strings, so such a map keeps its pairs.
 */
final class KvMap implements \Countable, \IteratorAggregate
{
    /** @param list<array{0: mixed, 1: mixed}> $pairs */
    public function __construct(public readonly array $pairs)
    {
    }

    /** The value of the first pair whose key equals $key (==, with Pid::equals for pids). */
    public function get(mixed $key, mixed $default = null): mixed
    {
        foreach ($this->pairs as [$k, $v]) {
            if ($k instanceof Pid ? $k->equals($key) : $k == $key) {
                return $v;
            }
        }
        return $default;
    }

    public function count(): int
    {
        return count($this->pairs);
    }

    public function getIterator(): \ArrayIterator
    {
        return new \ArrayIterator($this->pairs);
    }
}
