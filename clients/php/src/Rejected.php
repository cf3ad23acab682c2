<?php
declare(strict_types=1);

namespace Shoal;

/**
 * Thrown by a member's handler to reject a request as bad: the caller gets
 * the "rejected" kind (422) with this message. Any other exception is a
 * crash of the handler (the "crash" kind, its class as remote_type).
 */
class Rejected extends \RuntimeException
{
}
