<?php
declare(strict_types=1);

namespace Shoal;

/**
 * The gateway's JSON mapping (docs/gateway.md section 2), both ways.
 *
 * Decoding gives null, bool, int, float, string, list arrays, and for a JSON
 * object (plain or $map) an array with string keys; Pid, Bin, Crash for the
 * typed values, KvMap for {"$kv": ...}. Two PHP limits, and how they are kept
 * exact: an empty object, or one whose keys PHP would turn into the list
 * 0..n-1 ({"0": ...}), decodes to a \stdClass (so it is sent back as an
 * object); integers beyond PHP_INT_MAX decode to floats (use msgpack).
 *
 * Encoding takes those, plus \stdClass as a map. An array that is a list is
 * a JSON array; any other array is a map (its int keys written as strings),
 * sent as {"$map": ...} when a key starts with "$". Strings must be UTF-8
 * (wrap bytes in Bin); NaN and infinities are refused.
 *
 * A one-key object whose key starts with "$" and is none of the typed forms,
 * or an object of two or more keys one of which starts with "$", is refused
 * (InvalidArgumentException), as the gateway refuses it; so are $kv keys
 * that are neither strings nor Bin (the wire's rule) and nesting deeper than
 * MAX_DEPTH.
 */
final class Json
{
    /** Deepest nesting of arrays and objects accepted (the gateway's bound). */
    public const MAX_DEPTH = 256;
    private const FLAGS = JSON_PRESERVE_ZERO_FRACTION | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE;

    public static function decode(string $text): mixed
    {
        try {
            $value = json_decode($text, false, 2 * self::MAX_DEPTH, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('malformed JSON: ' . $e->getMessage(), 0, $e);
        }
        return self::toTerm($value);
    }

    public static function encode(mixed $term): string
    {
        try {
            return json_encode(self::fromTerm($term), self::FLAGS | JSON_THROW_ON_ERROR, 4 * self::MAX_DEPTH);
        } catch (\JsonException $e) {
            throw new \InvalidArgumentException('no JSON form: ' . $e->getMessage(), 0, $e);
        }
    }

    /** Maps a json_decode()d value (objects as \stdClass) to a term. */
    public static function toTerm(mixed $json, int $depth = 0): mixed
    {
        if ($depth > self::MAX_DEPTH) {
            throw new \InvalidArgumentException('a value nested deeper than ' . self::MAX_DEPTH);
        }
        if (is_array($json)) {
            return array_map(fn (mixed $item): mixed => self::toTerm($item, $depth + 1), $json);
        }
        if (!$json instanceof \stdClass) {
            return $json;
        }
        $fields = get_object_vars($json);
        $typed = null;
        foreach ($fields as $k => $_) {
            if (str_starts_with((string) $k, '$')) {
                $typed = (string) $k;
            }
        }
        if ($typed === null) {
            return self::strMap($fields, $depth);
        }
        if (count($fields) !== 1) {
            throw new \InvalidArgumentException("an object with a key starting with \$ must have only that key: $typed");
        }
        $v = $fields[$typed];
        switch ($typed) {
            case '$pid':
                if (!is_array($v) || count($v) !== 3 || !is_string($v[0]) || !is_int($v[1]) || !is_int($v[2])) {
                    throw new \InvalidArgumentException('$pid wants [node, creation, serial]');
                }
                return new Pid($v[0], $v[1], $v[2]);
            case '$bin':
                if (!is_string($v)) {
                    throw new \InvalidArgumentException('$bin wants a hex string');
                }
                return Bin::fromHex($v);
            case '$crash':
                if (!is_array($v) || count($v) !== 3 || count(array_filter($v, 'is_string')) !== 3) {
                    throw new \InvalidArgumentException('$crash wants [type, message, traceback] strings');
                }
                return new Crash($v[0], $v[1], $v[2]);
            case '$map':
                if (!$v instanceof \stdClass) {
                    throw new \InvalidArgumentException('$map wants an object');
                }
                return self::strMap(get_object_vars($v), $depth);
            case '$kv':
                if (!is_array($v)) {
                    throw new \InvalidArgumentException('$kv wants [[key, value], ...]');
                }
                $pairs = [];
                foreach ($v as $pair) {
                    if (!is_array($pair) || count($pair) !== 2) {
                        throw new \InvalidArgumentException('$kv wants [[key, value], ...]');
                    }
                    $key = self::toTerm($pair[0], $depth + 1);
                    if (!is_string($key) && !$key instanceof Bin) {
                        throw new \InvalidArgumentException('$kv keys are strings or {"$bin": ...}');
                    }
                    $pairs[] = [$key, self::toTerm($pair[1], $depth + 1)];
                }
                return new KvMap($pairs);
            default:
                throw new \InvalidArgumentException("unknown typed value $typed");
        }
    }

    /** @param array<array-key, mixed> $fields */
    private static function strMap(array $fields, int $depth): array|\stdClass
    {
        $out = array_map(fn (mixed $item): mixed => self::toTerm($item, $depth + 1), $fields);
        if ($out === [] || array_is_list($out)) {
            return (object) $out;  // an array would be sent back as a JSON array
        }
        return $out;
    }

    /** Maps a term to a value json_encode() writes in the mapping's form. */
    public static function fromTerm(mixed $term): mixed
    {
        if ($term === null || is_bool($term) || is_int($term) || is_string($term)) {
            return $term;
        }
        if (is_float($term)) {
            if (!is_finite($term)) {
                throw new \InvalidArgumentException('NaN and infinities have no JSON form');
            }
            return $term;
        }
        if ($term instanceof Pid) {
            return ['$pid' => [$term->node, $term->creation, $term->serial]];
        }
        if ($term instanceof Bin) {
            return ['$bin' => $term->hex()];
        }
        if ($term instanceof Crash) {
            return ['$crash' => [$term->type, $term->message, $term->traceback]];
        }
        if ($term instanceof KvMap) {
            $pairs = [];
            foreach ($term->pairs as [$key, $value]) {
                if (!is_string($key) && !$key instanceof Bin) {
                    throw new \InvalidArgumentException('map keys are strings or bytes, not ' . get_debug_type($key));
                }
                $pairs[] = [self::fromTerm($key), self::fromTerm($value)];
            }
            return ['$kv' => $pairs];
        }
        if ($term instanceof \stdClass) {
            return self::mapOf(get_object_vars($term));
        }
        if (is_array($term)) {
            return array_is_list($term) ? array_map([self::class, 'fromTerm'], $term) : self::mapOf($term);
        }
        throw new \InvalidArgumentException('no JSON form for ' . get_debug_type($term));
    }

    /** @param array<array-key, mixed> $fields */
    private static function mapOf(array $fields): \stdClass|array
    {
        $out = new \stdClass();
        $dollar = false;
        foreach ($fields as $k => $v) {
            $dollar = $dollar || str_starts_with((string) $k, '$');
            $out->{(string) $k} = self::fromTerm($v);
        }
        return $dollar ? ['$map' => $out] : $out;
    }
}
