<?php
declare(strict_types=1);

namespace Shoal;

/**
 * A shoal process id: node name, creation (new every start), serial. Never
 * reused. JSON: {"$pid": [node, creation, serial]}; in paths and headers it
 * is written as __toString() prints it, <node.creation.serial>.
 */
final class Pid
{
    public function __construct(
        public readonly string $node,
        public readonly int $creation,
        public readonly int $serial,
    ) {
        if ($node === '') {
            throw new \InvalidArgumentException("a pid's node name must not be empty");
        }
        if ($creation < 0 || $serial < 0) {
            throw new \InvalidArgumentException("a pid's creation and serial are not negative");
        }
    }

    /** Parses <node.creation.serial> (the angle brackets are optional). */
    public static function parse(string $text): self
    {
        $t = trim($text);
        if (str_starts_with($t, '<') && str_ends_with($t, '>')) {
            $t = substr($t, 1, -1);
        }
        if (!preg_match('/^(.+)\.(\d+)\.(\d+)$/s', $t, $m)) {
            throw new \InvalidArgumentException("not a pid (want <node.creation.serial>): $text");
        }
        return new self($m[1], (int) $m[2], (int) $m[3]);
    }

    public function equals(mixed $other): bool
    {
        return $other instanceof self && $other->node === $this->node
            && $other->creation === $this->creation && $other->serial === $this->serial;
    }

    public function __toString(): string
    {
        return "<{$this->node}.{$this->creation}.{$this->serial}>";
    }
}
