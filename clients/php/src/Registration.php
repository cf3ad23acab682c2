<?php
declare(strict_types=1);

namespace Shoal;

/** A TTL registration of a member: its id (to renew or end it), the proxy's pid, its TTL in seconds. */
final class Registration
{
    public function __construct(
        public readonly string $id,
        public readonly Pid $pid,
        public readonly int $ttl,
    ) {
    }

    /** @internal */
    public static function fromAnswer(mixed $answer): self
    {
        if (!is_array($answer) || !is_string($answer['id'] ?? null) || !($answer['pid'] ?? null) instanceof Pid) {
            throw new ShoalException('bad_response', 'a registration answer without an id and a pid', false, 201);
        }
        return new self($answer['id'], $answer['pid'], (int) ($answer['ttl'] ?? 0));
    }
}
