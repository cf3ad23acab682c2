package io.shoal.gateway;

import java.util.Objects;

/**
 * A crash reason (how a process exited when its handler raised):
 * {@code {"$crash": [type, message, traceback]}} in JSON, the type being the
 * exception's qualified class name, e.g. {@code builtins.ValueError}.
 */
public final class Crash {
    private final String type;
    private final String message;
    private final String traceback;

    public Crash(String type, String message, String traceback) {
        this.type = Objects.requireNonNull(type, "type");
        this.message = Objects.requireNonNull(message, "message");
        this.traceback = Objects.requireNonNull(traceback, "traceback");
    }

    public String type() { return type; }
    public String message() { return message; }
    public String traceback() { return traceback; }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Crash)) return false;
        Crash c = (Crash) o;
        return type.equals(c.type) && message.equals(c.message) && traceback.equals(c.traceback);
    }

    @Override
    public int hashCode() { return Objects.hash(type, message, traceback); }

    @Override
    public String toString() { return "Crash(" + type + ": " + message + ")"; }
}
