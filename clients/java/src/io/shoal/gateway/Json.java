package io.shoal.gateway;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The gateway's JSON mapping (docs/gateway.md section 2), both ways, with a
 * small JSON reader and writer of its own (the client has no dependency).
 *
 * <p>Decoding gives: {@code null}, {@link Boolean}, {@link Long} (or
 * {@link BigInteger} beyond 64 bits), {@link Double}, {@link String},
 * {@link List}, {@link Map} with String keys (a JSON object, or
 * {@code $map}), {@link Map} with any keys ({@code $kv}), {@link Pid},
 * {@link Bin} and {@link Crash}. Encoding takes those plus any
 * {@link Number}, {@code byte[]}, any {@link Collection} and object arrays; a
 * map whose String keys include one starting with {@code $} is written as
 * {@code $map}, a map with a key that is not a String as {@code $kv} (map
 * keys are Strings or bytes, as on the wire). Arrays and objects nest at
 * most 256 deep.
 *
 * <p>Rules: a one-key object whose key starts with {@code $} and is not one
 * of the typed forms, or an object of two or more keys one of which starts
 * with {@code $}, is refused (IllegalArgumentException), as the gateway
 * refuses it. NaN and the infinities have no JSON form and are refused.
 */
public final class Json {
    private Json() {}

    /** Parses JSON text and maps typed values to terms. */
    public static Object decode(String text) {
        return toTerm(parse(text));
    }

    /** Maps a term to its JSON form and writes it. */
    public static String encode(Object term) {
        StringBuilder sb = new StringBuilder();
        write(fromTerm(term), sb);
        return sb.toString();
    }

    // ---- the mapping -------------------------------------------------------

    /** Maps a parsed JSON value (plain maps, lists, scalars) to a term. */
    static Object toTerm(Object json) {
        if (json instanceof List) {
            List<?> in = (List<?>) json;
            List<Object> out = new ArrayList<>(in.size());
            for (Object item : in) out.add(toTerm(item));
            return out;
        }
        if (!(json instanceof Map)) return json;
        Map<?, ?> obj = (Map<?, ?>) json;
        String typed = null;
        for (Object k : obj.keySet()) {
            if (((String) k).startsWith("$")) typed = (String) k;
        }
        if (typed == null) {
            Map<String, Object> out = new LinkedHashMap<>();
            for (Map.Entry<?, ?> e : obj.entrySet()) out.put((String) e.getKey(), toTerm(e.getValue()));
            return out;
        }
        if (obj.size() != 1) {
            throw new IllegalArgumentException("an object with a key starting with $ must have only that key: " + typed);
        }
        Object v = obj.get(typed);
        switch (typed) {
            case "$pid": {
                List<?> p = listOf(v, 3, typed);
                if (!(p.get(0) instanceof String) || !(p.get(1) instanceof Long) || !(p.get(2) instanceof Long)) {
                    throw new IllegalArgumentException("$pid wants [node, creation, serial]: " + v);
                }
                return new Pid((String) p.get(0), (Long) p.get(1), (Long) p.get(2));
            }
            case "$bin":
                if (!(v instanceof String)) throw new IllegalArgumentException("$bin wants a hex string");
                return Bin.fromHex((String) v);
            case "$crash": {
                List<?> c = listOf(v, 3, typed);
                for (Object part : c) {
                    if (!(part instanceof String)) {
                        throw new IllegalArgumentException("$crash wants [type, message, traceback] strings");
                    }
                }
                return new Crash((String) c.get(0), (String) c.get(1), (String) c.get(2));
            }
            case "$map": {
                if (!(v instanceof Map)) throw new IllegalArgumentException("$map wants an object");
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                    out.put((String) e.getKey(), toTerm(e.getValue()));
                }
                return out;
            }
            case "$kv": {
                if (!(v instanceof List)) throw new IllegalArgumentException("$kv wants [[key, value], ...]");
                Map<Object, Object> out = new LinkedHashMap<>();
                for (Object pair : (List<?>) v) {
                    List<?> kv = listOf(pair, 2, typed);
                    Object key = toTerm(kv.get(0));
                    if (!(key instanceof String) && !(key instanceof Bin)) {
                        throw new IllegalArgumentException("$kv keys are strings or {\"$bin\": ...}: " + kv.get(0));
                    }
                    out.put(key, toTerm(kv.get(1)));
                }
                return out;
            }
            default:
                throw new IllegalArgumentException("unknown typed value " + typed);
        }
    }

    private static List<?> listOf(Object v, int size, String what) {
        if (!(v instanceof List) || ((List<?>) v).size() != size) {
            throw new IllegalArgumentException(what + " wants an array of " + size);
        }
        return (List<?>) v;
    }

    /** Maps a term to a plain JSON value (maps with String keys, lists, scalars). */
    static Object fromTerm(Object term) {
        if (term == null || term instanceof Boolean || term instanceof String) return term;
        if (term instanceof Character) return term.toString();
        if (term instanceof Double || term instanceof Float) {
            double d = ((Number) term).doubleValue();
            if (Double.isNaN(d) || Double.isInfinite(d)) {
                throw new IllegalArgumentException("NaN and infinities have no JSON form");
            }
            return d;
        }
        if (term instanceof Long || term instanceof Integer || term instanceof Short || term instanceof Byte) {
            return ((Number) term).longValue();
        }
        if (term instanceof BigInteger || term instanceof BigDecimal) return term;
        if (term instanceof Pid) {
            Pid p = (Pid) term;
            return Map.of("$pid", List.of(p.node(), p.creation(), p.serial()));
        }
        if (term instanceof Bin) return Map.of("$bin", ((Bin) term).hex());
        if (term instanceof byte[]) return Map.of("$bin", new Bin((byte[]) term).hex());
        if (term instanceof Crash) {
            Crash c = (Crash) term;
            return Map.of("$crash", List.of(c.type(), c.message(), c.traceback()));
        }
        if (term instanceof Map) {
            Map<?, ?> m = (Map<?, ?>) term;
            boolean allStrings = true;
            boolean dollar = false;
            for (Object k : m.keySet()) {
                if (!(k instanceof String)) allStrings = false;
                else if (((String) k).startsWith("$")) dollar = true;
            }
            if (allStrings) {
                Map<String, Object> out = new LinkedHashMap<>();
                for (Map.Entry<?, ?> e : m.entrySet()) out.put((String) e.getKey(), fromTerm(e.getValue()));
                return dollar ? Map.of("$map", out) : out;
            }
            List<Object> pairs = new ArrayList<>(m.size());
            for (Map.Entry<?, ?> e : m.entrySet()) {
                Object key = e.getKey();
                if (!(key instanceof String) && !(key instanceof Bin) && !(key instanceof byte[])) {
                    throw new IllegalArgumentException("map keys are strings or bytes, not " + key);
                }
                pairs.add(Arrays.asList(fromTerm(key), fromTerm(e.getValue())));
            }
            return Map.of("$kv", pairs);
        }
        if (term instanceof Collection) {
            List<Object> out = new ArrayList<>();
            for (Object item : (Collection<?>) term) out.add(fromTerm(item));
            return out;
        }
        if (term instanceof Object[]) {
            List<Object> out = new ArrayList<>();
            for (Object item : (Object[]) term) out.add(fromTerm(item));
            return out;
        }
        throw new IllegalArgumentException("no JSON form for " + term.getClass().getName());
    }

    // ---- the writer --------------------------------------------------------

    static void write(Object v, StringBuilder sb) {
        if (v == null) {
            sb.append("null");
        } else if (v instanceof Boolean || v instanceof Long || v instanceof BigInteger) {
            sb.append(v);
        } else if (v instanceof Double) {
            sb.append(v);  // Double.toString keeps a ".0" or an exponent: the value stays a float
        } else if (v instanceof BigDecimal) {
            sb.append(((BigDecimal) v).toString());
        } else if (v instanceof String) {
            quote((String) v, sb);
        } else if (v instanceof Map) {
            sb.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> e : ((Map<?, ?>) v).entrySet()) {
                if (!first) sb.append(',');
                first = false;
                quote((String) e.getKey(), sb);
                sb.append(':');
                write(e.getValue(), sb);
            }
            sb.append('}');
        } else if (v instanceof List) {
            sb.append('[');
            boolean first = true;
            for (Object item : (List<?>) v) {
                if (!first) sb.append(',');
                first = false;
                write(item, sb);
            }
            sb.append(']');
        } else {
            throw new IllegalArgumentException("no JSON form for " + v.getClass().getName());
        }
    }

    private static void quote(String s, StringBuilder sb) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
            }
        }
        sb.append('"');
    }

    // ---- the reader --------------------------------------------------------

    /** Parses JSON text into null, Boolean, Long/BigInteger, Double, String, List and Map. */
    static Object parse(String text) {
        Reader r = new Reader(text);
        r.space();
        Object v = r.value(0);
        r.space();
        if (r.pos != text.length()) throw r.error("unexpected text after the value");
        return v;
    }

    private static final class Reader {
        /** Nesting deeper than this is refused (the gateway's bound too), so no body overflows the stack. */
        private static final int MAX_DEPTH = 256;
        private final String s;
        private int pos;

        Reader(String s) { this.s = s; }

        IllegalArgumentException error(String what) {
            return new IllegalArgumentException("malformed JSON at offset " + pos + ": " + what);
        }

        void space() {
            while (pos < s.length()) {
                char c = s.charAt(pos);
                if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
                pos++;
            }
        }

        Object value(int depth) {
            if (depth > MAX_DEPTH) throw error("nested too deep");
            if (pos >= s.length()) throw error("unexpected end");
            char c = s.charAt(pos);
            switch (c) {
                case '{': return object(depth);
                case '[': return array(depth);
                case '"': return string();
                case 't': return literal("true", Boolean.TRUE);
                case 'f': return literal("false", Boolean.FALSE);
                case 'n': return literal("null", null);
                default:
                    if (c == '-' || (c >= '0' && c <= '9')) return number();
                    throw error("unexpected character '" + c + "'");
            }
        }

        private Object literal(String word, Object v) {
            if (!s.startsWith(word, pos)) throw error("expected " + word);
            pos += word.length();
            return v;
        }

        private Map<String, Object> object(int depth) {
            Map<String, Object> out = new LinkedHashMap<>();
            pos++;
            space();
            if (pos < s.length() && s.charAt(pos) == '}') { pos++; return out; }
            while (true) {
                space();
                if (pos >= s.length() || s.charAt(pos) != '"') throw error("expected a string key");
                String key = string();
                space();
                expect(':');
                space();
                out.put(key, value(depth + 1));
                space();
                if (pos < s.length() && s.charAt(pos) == ',') { pos++; continue; }
                expect('}');
                return out;
            }
        }

        private List<Object> array(int depth) {
            List<Object> out = new ArrayList<>();
            pos++;
            space();
            if (pos < s.length() && s.charAt(pos) == ']') { pos++; return out; }
            while (true) {
                space();
                out.add(value(depth + 1));
                space();
                if (pos < s.length() && s.charAt(pos) == ',') { pos++; continue; }
                expect(']');
                return out;
            }
        }

        private void expect(char c) {
            if (pos >= s.length() || s.charAt(pos) != c) throw error("expected '" + c + "'");
            pos++;
        }

        private String string() {
            pos++;
            StringBuilder sb = new StringBuilder();
            while (true) {
                if (pos >= s.length()) throw error("unterminated string");
                char c = s.charAt(pos++);
                if (c == '"') return sb.toString();
                if (c < 0x20) throw error("control character in a string");
                if (c != '\\') { sb.append(c); continue; }
                if (pos >= s.length()) throw error("unterminated escape");
                char e = s.charAt(pos++);
                switch (e) {
                    case '"': sb.append('"'); break;
                    case '\\': sb.append('\\'); break;
                    case '/': sb.append('/'); break;
                    case 'b': sb.append('\b'); break;
                    case 'f': sb.append('\f'); break;
                    case 'n': sb.append('\n'); break;
                    case 'r': sb.append('\r'); break;
                    case 't': sb.append('\t'); break;
                    case 'u':
                        if (pos + 4 > s.length()) throw error("short \\u escape");
                        try {
                            sb.append((char) Integer.parseInt(s.substring(pos, pos + 4), 16));
                        } catch (NumberFormatException x) {
                            throw error("bad \\u escape");
                        }
                        pos += 4;
                        break;
                    default: throw error("bad escape \\" + e);
                }
            }
        }

        private Object number() {
            int start = pos;
            if (s.charAt(pos) == '-') pos++;
            int digits = pos;
            while (pos < s.length() && Character.isDigit(s.charAt(pos))) pos++;
            if (pos == digits) throw error("a number needs digits");
            if (s.charAt(digits) == '0' && pos - digits > 1) throw error("leading zero");
            boolean integral = true;
            if (pos < s.length() && s.charAt(pos) == '.') {
                integral = false;
                pos++;
                int frac = pos;
                while (pos < s.length() && Character.isDigit(s.charAt(pos))) pos++;
                if (pos == frac) throw error("a fraction needs digits");
            }
            if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
                integral = false;
                pos++;
                if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) pos++;
                int exp = pos;
                while (pos < s.length() && Character.isDigit(s.charAt(pos))) pos++;
                if (pos == exp) throw error("an exponent needs digits");
            }
            String t = s.substring(start, pos);
            if (!integral) return Double.parseDouble(t);
            BigInteger big = new BigInteger(t);
            return big.bitLength() < 64 ? (Object) big.longValue() : big;
        }
    }
}
