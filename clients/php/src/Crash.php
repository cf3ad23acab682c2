<?php
declare(strict_types=1);

namespace Shoal;

/**
 * A crash reason (how a process exited when its handler raised):
 * {"$crash": [type, message, traceback]}, the type being the exception's
 * qualified class name, e.g. builtins.ValueError.
 */
final class Crash
{
    public function __construct(
        public readonly string $type,
        public readonly string $message,
        public readonly string $traceback,
    ) {
    }
}
