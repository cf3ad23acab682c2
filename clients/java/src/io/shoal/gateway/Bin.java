package io.shoal.gateway;

import java.util.Arrays;

/**
 * Bytes, as a shoal term: {@code {"$bin": "<hex>"}} in JSON. A {@code byte[]}
 * is also sent as bytes; replies holding bytes arrive as {@code Bin} (unlike
 * an array it has value equality).
 */
public final class Bin {
    private static final char[] HEX = "0123456789abcdef".toCharArray();
    private final byte[] bytes;

    public Bin(byte[] bytes) { this.bytes = bytes.clone(); }

    /** Parses lower- or upper-case hex, two digits a byte. */
    public static Bin fromHex(String hex) {
        if (hex.length() % 2 != 0) {
            throw new IllegalArgumentException("$bin needs an even number of hex digits");
        }
        byte[] out = new byte[hex.length() / 2];
        for (int i = 0; i < out.length; i++) {
            int hi = Character.digit(hex.charAt(2 * i), 16);
            int lo = Character.digit(hex.charAt(2 * i + 1), 16);
            if (hi < 0 || lo < 0) {
                throw new IllegalArgumentException("$bin is not hex: " + hex);
            }
            out[i] = (byte) (hi << 4 | lo);
        }
        return new Bin(out);
    }

    public byte[] bytes() { return bytes.clone(); }

    public String hex() {
        StringBuilder sb = new StringBuilder(bytes.length * 2);
        for (byte b : bytes) {
            sb.append(HEX[(b >> 4) & 15]).append(HEX[b & 15]);
        }
        return sb.toString();
    }

    @Override
    public boolean equals(Object o) { return o instanceof Bin && Arrays.equals(bytes, ((Bin) o).bytes); }

    @Override
    public int hashCode() { return Arrays.hashCode(bytes); }

    @Override
    public String toString() { return "Bin(" + hex() + ")"; }
}
