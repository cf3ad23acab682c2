package io.shoal.gateway;

import java.time.Duration;
import java.util.Objects;

/**
 * Options of a call (docs/gateway.md section 3). Immutable; each {@code with}
 * method returns a copy. The timeout covers all attempts together and is
 * always sent: {@link #DEFAULT_TIMEOUT} (5 s, the gateway's default) unless
 * set; at most 300 s.
 */
public final class CallOptions {
    /** The timeout of a call made without one: 5 seconds, as the gateway's. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(5);
    /** The longest timeout the gateway accepts. */
    public static final Duration MAX_TIMEOUT = Duration.ofSeconds(300);
    public static final CallOptions DEFAULTS = new CallOptions(DEFAULT_TIMEOUT, null, null, false);

    private final Duration timeout;
    private final String strategy;
    private final String key;
    private final boolean idempotent;

    private CallOptions(Duration timeout, String strategy, String key, boolean idempotent) {
        this.timeout = timeout;
        this.strategy = strategy;
        this.key = key;
        this.idempotent = idempotent;
    }

    public static CallOptions defaults() { return DEFAULTS; }

    /** For all attempts together; the gateway answers {@code timeout} when it passes. */
    public CallOptions withTimeout(Duration timeout) {
        Objects.requireNonNull(timeout, "timeout");
        if (timeout.isNegative() || timeout.isZero() || timeout.compareTo(MAX_TIMEOUT) > 0) {
            throw new IllegalArgumentException("a timeout is more than 0 and at most 300 s: " + timeout);
        }
        return new CallOptions(timeout, strategy, key, idempotent);
    }

    /** {@code local_first} (the gateway's default), {@code random}, {@code round_robin}, {@code least_loaded} or {@code hash}. */
    public CallOptions withStrategy(String strategy) {
        return new CallOptions(timeout, strategy, key, idempotent);
    }

    /** The key of the {@code hash} strategy. */
    public CallOptions withKey(String key) {
        return new CallOptions(timeout, strategy, key, idempotent);
    }

    /** Also retry on another member when delivery is unknown (the request is safe to run twice). */
    public CallOptions withIdempotent(boolean idempotent) {
        return new CallOptions(timeout, strategy, key, idempotent);
    }

    public Duration timeout() { return timeout; }
    public String strategy() { return strategy; }
    public String key() { return key; }
    public boolean idempotent() { return idempotent; }
}
