package io.shoal.gateway;

import java.util.Objects;

/**
 * A shoal process id: the node's name, its creation (a new one every start)
 * and a serial. Pids are never reused, so a pid of an earlier incarnation is
 * dead. In JSON it is {@code {"$pid": [node, creation, serial]}}; in paths and
 * headers it is written as {@link #toString()} prints it, {@code <node.creation.serial>}.
 */
public final class Pid {
    private final String node;
    private final long creation;
    private final long serial;

    public Pid(String node, long creation, long serial) {
        if (node == null || node.isEmpty()) {
            throw new IllegalArgumentException("a pid's node name must not be empty");
        }
        if (creation < 0 || serial < 0) {
            throw new IllegalArgumentException("a pid's creation and serial are not negative");
        }
        this.node = node;
        this.creation = creation;
        this.serial = serial;
    }

    /**
     * Parses {@code <node.creation.serial>} (the angle brackets are optional).
     *
     * @throws IllegalArgumentException when the text is not a pid
     */
    public static Pid parse(String text) {
        String t = text.trim();
        if (t.startsWith("<") && t.endsWith(">")) {
            t = t.substring(1, t.length() - 1);
        }
        int last = t.lastIndexOf('.');
        int middle = last < 0 ? -1 : t.lastIndexOf('.', last - 1);
        if (middle <= 0) {
            throw new IllegalArgumentException("not a pid (want <node.creation.serial>): " + text);
        }
        try {
            return new Pid(t.substring(0, middle), Long.parseLong(t.substring(middle + 1, last)),
                           Long.parseLong(t.substring(last + 1)));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("not a pid (want <node.creation.serial>): " + text, e);
        }
    }

    public String node() { return node; }
    public long creation() { return creation; }
    public long serial() { return serial; }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Pid)) return false;
        Pid p = (Pid) o;
        return node.equals(p.node) && creation == p.creation && serial == p.serial;
    }

    @Override
    public int hashCode() { return Objects.hash(node, creation, serial); }

    @Override
    public String toString() { return "<" + node + "." + creation + "." + serial + ">"; }
}
