package io.shoal.gateway;

import java.util.Map;

/**
 * Every failure of a gateway request. {@link #kind()} is the gateway's error
 * kind (docs/gateway.md section 4: {@code no_members}, {@code crash},
 * {@code timeout}, ...) or one of the client's own, which have
 * {@link #status()} 0:
 * <ul>
 *   <li>{@code unreachable}: the gateway refused the connection or could not
 *       be reached in time; nothing was sent ({@code retrySafe} true);</li>
 *   <li>{@code timeout}: no answer within the call's timeout plus
 *       {@link ShoalGateway#ANSWER_GRACE} ({@code retrySafe} false);</li>
 *   <li>{@code io}: the connection broke after the request was sent
 *       ({@code retrySafe} false: delivery is unknown);</li>
 *   <li>{@code bad_response}: the gateway's answer could not be read.</li>
 * </ul>
 *
 * <p>The retry rule, the same in every language: send a request again (to
 * the same or another gateway, now or later) only when {@link #retrySafe()}
 * is true (it provably did not start) or the request is idempotent.
 */
public class ShoalException extends Exception {
    private static final long serialVersionUID = 1L;
    private final String kind;
    private final boolean retrySafe;
    private final int status;
    private final String remoteType;
    private final Pid member;

    public ShoalException(String kind, String message, boolean retrySafe, int status,
                          String remoteType, Pid member, Throwable cause) {
        super(kind + ": " + message, cause);
        this.kind = kind;
        this.retrySafe = retrySafe;
        this.status = status;
        this.remoteType = remoteType;
        this.member = member;
    }

    /**
     * The exception an error answer of the gateway stands for: its status and its
     * {@code {"error": {"kind", "message", "retry_safe", "remote_type"?, "member"?}}} body
     * (docs/gateway.md section 4); {@code bad_response} when the body is not that.
     */
    public static ShoalException fromAnswer(int status, String body) {
        Object parsed;
        try {
            parsed = Json.decode(body);
        } catch (IllegalArgumentException e) {
            return ShoalGateway.badResponse(status, "an error answer that is not JSON: " + abbreviate(body));
        }
        Object err = parsed instanceof Map ? ((Map<?, ?>) parsed).get("error") : null;
        if (!(err instanceof Map) || !(((Map<?, ?>) err).get("kind") instanceof String)) {
            return ShoalGateway.badResponse(status, "an error answer without an error kind: " + abbreviate(body));
        }
        Map<?, ?> e = (Map<?, ?>) err;
        Object type = e.get("remote_type");
        Object member = e.get("member");
        return new ShoalException((String) e.get("kind"), String.valueOf(e.get("message")),
                                  Boolean.TRUE.equals(e.get("retry_safe")), status,
                                  type instanceof String ? (String) type : null,
                                  member instanceof Pid ? (Pid) member : null, null);
    }

    private static String abbreviate(String s) {
        return s.length() <= 200 ? s : s.substring(0, 200) + "...";
    }

    /** The error kind: the gateway's (section 4 of docs/gateway.md) or the client's own (status 0). */
    public String kind() { return kind; }

    /** True only when the request provably did not start: sending it again is safe. */
    public boolean retrySafe() { return retrySafe; }

    /** The HTTP status of the gateway's answer; 0 when the gateway gave none. */
    public int status() { return status; }

    /** For a {@code crash}: the class of the exception the handler raised; else null. */
    public String remoteType() { return remoteType; }

    /** The member that failed, when the gateway names it; else null. */
    public Pid member() { return member; }
}
