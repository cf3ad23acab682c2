<?php
declare(strict_types=1);

namespace Shoal;

/**
 * Every failure of a gateway request. $kind is the gateway's error kind
 * (docs/gateway.md section 4: no_members, crash, timeout, ...) or one of the
 * client's own, which have $status 0: "unreachable" (the gateway refused the
 * connection or could not be reached in time: nothing was sent, retry-safe),
 * "timeout" (no answer within the timeout plus Gateway::ANSWER_GRACE), "io"
 * (the connection broke after the request was sent: delivery unknown),
 * "bad_response" (an answer that could not be read).
 *
 * The retry rule, the same in every language: send a request again only when
 * $retrySafe is true (it provably did not start) or the request is idempotent.
 */
class ShoalException extends \RuntimeException
{
    public function __construct(
        public readonly string $kind,
        string $message,
        public readonly bool $retrySafe,
        public readonly int $status = 0,
        public readonly ?string $remoteType = null,
        public readonly ?Pid $member = null,
        ?\Throwable $previous = null,
    ) {
        parent::__construct("$kind: $message", $status, $previous);
    }

    public function kind(): string
    {
        return $this->kind;
    }

    public function retrySafe(): bool
    {
        return $this->retrySafe;
    }

    public function status(): int
    {
        return $this->status;
    }

    public function remoteType(): ?string
    {
        return $this->remoteType;
    }
}
