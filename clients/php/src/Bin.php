<?php
declare(strict_types=1);

namespace Shoal;

/**
 * Bytes, as a shoal term: {"$bin": "<hex>"} in JSON. A PHP string is sent as
 * a (UTF-8) string; wrap binary data in Bin to send bytes.
 */
final class Bin
{
    public function __construct(public readonly string $bytes)
    {
    }

    public static function fromHex(string $hex): self
    {
        if (strlen($hex) % 2 !== 0 || ($hex !== '' && !ctype_xdigit($hex))) {
            throw new \InvalidArgumentException('$bin wants an even number of hex digits');
        }
        return new self((string) hex2bin($hex));
    }

    public function hex(): string
    {
        return bin2hex($this->bytes);
    }
}
