package io.shoal.gateway;

import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpConnectTimeoutException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A client of a shoal node's HTTP/JSON gateway, protocol v1 (docs/gateway.md).
 * Thread-safe; one instance shares its connections among threads.
 *
 * <pre>{@code
 * ShoalGateway gw = new ShoalGateway("http://127.0.0.1:8080", token);
 * Object reply = gw.call("default", "prices", Map.of("sku", "A-1"), CallOptions.defaults());
 * }</pre>
 *
 * <p><b>Timeouts.</b> Every call sends its timeout ({@link CallOptions#DEFAULT_TIMEOUT},
 * 5 s, unless set) and the gateway enforces it, answering {@code timeout};
 * the client itself gives up {@link #ANSWER_GRACE} later (kind {@code timeout}
 * too). Casts, sends and member look-ups wait at most 5 s for their answer.
 * Connecting waits at most {@link #CONNECT_TIMEOUT}.
 *
 * <p><b>Errors</b> are {@link ShoalException}s; retry only when
 * {@link ShoalException#retrySafe()} or the request is idempotent. The client
 * never retries by itself: a group call is already retried on another member
 * by the gateway when that is safe.
 */
public final class ShoalGateway {
    /** The protocol version this client speaks; it is in every path. */
    public static final String PROTOCOL = "v1";
    /** How long past a call's timeout the client waits for the gateway's own answer. */
    public static final Duration ANSWER_GRACE = Duration.ofSeconds(2);
    /** How long connecting to the gateway may take before the request fails {@code unreachable}. */
    public static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(5);

    private final URI base;
    private final String token;
    private final HttpClient http;

    /**
     * @param baseUrl the node's HTTP address, e.g. {@code http://127.0.0.1:8080}; null reads SHOAL_GATEWAY_URL
     * @param token the gateway's bearer token; null reads SHOAL_GATEWAY_TOKEN
     * @throws IllegalArgumentException when the URL or the token is missing or the URL is not http(s)
     */
    public ShoalGateway(String baseUrl, String token) {
        String url = baseUrl != null ? baseUrl : System.getenv("SHOAL_GATEWAY_URL");
        String tok = token != null ? token : System.getenv("SHOAL_GATEWAY_TOKEN");
        if (url == null || url.isEmpty()) {
            throw new IllegalArgumentException("no gateway URL: pass one or set SHOAL_GATEWAY_URL");
        }
        if (tok == null || tok.isEmpty()) {
            throw new IllegalArgumentException("no gateway token: pass one or set SHOAL_GATEWAY_TOKEN");
        }
        URI u = URI.create(url.endsWith("/") ? url.substring(0, url.length() - 1) : url);
        if (!"http".equals(u.getScheme()) && !"https".equals(u.getScheme())) {
            throw new IllegalArgumentException("the gateway URL must be http:// or https://: " + url);
        }
        this.base = u;
        this.token = tok.trim();
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .connectTimeout(CONNECT_TIMEOUT)
                .build();
    }

    /** A client of SHOAL_GATEWAY_URL with SHOAL_GATEWAY_TOKEN. */
    public static ShoalGateway fromEnv() {
        return new ShoalGateway(null, null);
    }

    public URI baseUrl() { return base; }

    // ---- callers -----------------------------------------------------------

    /** {@link #call(String, String, Object, CallOptions)} in the {@code default} scope with the default options. */
    public Object call(String group, Object request) throws ShoalException {
        return call("default", group, request, CallOptions.DEFAULTS);
    }

    /**
     * Calls one member of a group and returns its reply.
     *
     * @throws ShoalException {@code no_members} when the group has no live member; {@code crash}
     *     when the handler raised; {@code timeout} when the deadline passed; any kind of section 4
     */
    public Object call(String scope, String group, Object request, CallOptions options) throws ShoalException {
        return reply(exchange("POST", "/v1/call/" + seg(scope) + "/" + seg(group) + query(options),
                                    Json.encode(request), options.timeout().plus(ANSWER_GRACE)));
    }

    /** Calls one process by pid and returns its reply ({@code noproc} when it is not alive). */
    public Object callPid(Pid pid, Object request, CallOptions options) throws ShoalException {
        return reply(exchange("POST", "/v1/call/pid/" + seg(pid.toString()) + query(options),
                                    Json.encode(request), options.timeout().plus(ANSWER_GRACE)));
    }

    public Object callPid(Pid pid, Object request) throws ShoalException {
        return callPid(pid, request, CallOptions.DEFAULTS);
    }

    /** Casts to one member of the group (no reply) and returns the member it went to. */
    public Pid cast(String scope, String group, Object message) throws ShoalException {
        Object body = reply(exchange("POST", "/v1/cast/" + seg(scope) + "/" + seg(group),
                                           Json.encode(message), CallOptions.DEFAULT_TIMEOUT));
        Object member = body instanceof Map ? ((Map<?, ?>) body).get("member") : null;
        if (!(member instanceof Pid)) throw badResponse(202, "a cast's answer names no member");
        return (Pid) member;
    }

    /** Casts to one process by pid (its {@code handle_cast}). */
    public void castPid(Pid pid, Object message) throws ShoalException {
        exchange("POST", "/v1/cast/pid/" + seg(pid.toString()), Json.encode(message), CallOptions.DEFAULT_TIMEOUT);
    }

    /** Sends a plain message to a process (its {@code handle_info}). */
    public void send(Pid pid, Object message) throws ShoalException {
        exchange("POST", "/v1/send/pid/" + seg(pid.toString()), Json.encode(message), CallOptions.DEFAULT_TIMEOUT);
    }

    /** The group's members as the gateway's node sees them. */
    public Members members(String scope, String group) throws ShoalException {
        Object body = reply(exchange("GET", "/v1/members/" + seg(scope) + "/" + seg(group), null,
                                           CallOptions.DEFAULT_TIMEOUT));
        if (!(body instanceof Map)) throw badResponse(200, "members: not an object");
        Map<?, ?> m = (Map<?, ?>) body;
        return new Members(String.valueOf(m.get("scope")), String.valueOf(m.get("group")),
                           pids(m.get("members")), pids(m.get("routable")));
    }

    // ---- members -----------------------------------------------------------

    /**
     * Serves as a member of a group: starts a callback server on 127.0.0.1 (a free port),
     * registers it with the gateway and keeps the registration stream open. The member
     * leaves the group when {@link Member#close()} is called (gracefully: its calls in
     * flight finish first), or at once when this process dies.
     *
     * @param concurrency how many calls the handler runs at a time (1 to 1,000)
     * @throws ShoalException when the gateway refuses the registration
     */
    public Member serveMember(String scope, String group, MemberHandler handler, int concurrency)
            throws ShoalException {
        return serveMember(scope, group, handler, concurrency, new InetSocketAddress("127.0.0.1", 0));
    }

    /** As {@link #serveMember(String, String, MemberHandler, int)}, the callback server bound to {@code bind}. */
    public Member serveMember(String scope, String group, MemberHandler handler, int concurrency,
                              InetSocketAddress bind) throws ShoalException {
        if (concurrency < 1 || concurrency > 1000) {
            throw new IllegalArgumentException("concurrency is 1 to 1,000: " + concurrency);
        }
        return Member.start(this, scope, group, handler, concurrency, bind);
    }

    // ---- plumbing, shared with Member ---------------------------------------

    HttpClient http() { return http; }

    HttpRequest.Builder request(String path) {
        return HttpRequest.newBuilder(URI.create(base + path))
                .header("Authorization", "Bearer " + token)
                .header("Accept", "application/json");
    }

    /** Sends one request; returns the body of a 2xx answer, else throws the answer's error. */
    String exchange(String method, String path, String body, Duration wait)
            throws ShoalException {
        HttpRequest.Builder b = request(path).timeout(wait);
        if (body != null) {
            b.header("Content-Type", "application/json");
            b.method(method, HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
        } else {
            b.method(method, HttpRequest.BodyPublishers.noBody());
        }
        HttpResponse<String> resp;
        try {
            resp = http.send(b.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ShoalException("interrupted", "interrupted while waiting for the gateway", false, 0, null, null, e);
        } catch (IOException e) {
            throw transportError(e, wait);
        }
        if (resp.statusCode() / 100 == 2) return resp.body();
        throw ShoalException.fromAnswer(resp.statusCode(), resp.body());
    }

    static ShoalException transportError(IOException e, Duration wait) {
        if (e instanceof HttpConnectTimeoutException) {
            return new ShoalException("unreachable", "could not connect to the gateway in time", true, 0, null, null, e);
        }
        if (e instanceof HttpTimeoutException) {
            return new ShoalException("timeout", "no answer from the gateway within " + wait.toMillis() + " ms",
                                      false, 0, null, null, e);
        }
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ConnectException) {
                return new ShoalException("unreachable", "the gateway refused the connection", true, 0, null, null, e);
            }
        }
        return new ShoalException("io", "the connection to the gateway broke: " + e, false, 0, null, null, e);
    }

    /** Decodes a 2xx answer's body; one that does not decode is {@code bad_response}. */
    private static Object reply(String body) throws ShoalException {
        try {
            return Json.decode(body);
        } catch (IllegalArgumentException e) {
            throw badResponse(200, "an answer the JSON mapping refuses: " + e.getMessage());
        }
    }

    static ShoalException badResponse(int status, String message) {
        return new ShoalException("bad_response", message, false, status, null, null, null);
    }

    private static List<Pid> pids(Object v) throws ShoalException {
        if (!(v instanceof List)) throw badResponse(200, "members: not a list of pids");
        List<Pid> out = new ArrayList<>();
        for (Object p : (List<?>) v) {
            if (!(p instanceof Pid)) throw badResponse(200, "members: not a pid: " + p);
            out.add((Pid) p);
        }
        return out;
    }

    private static String query(CallOptions o) {
        // Whole milliseconds, at least one: the gateway refuses a timeout of 0.
        StringBuilder q = new StringBuilder("?timeout=");
        q.append(Math.max(1, o.timeout().toMillis()) / 1000.0);
        if (o.strategy() != null) q.append("&strategy=").append(seg(o.strategy()));
        if (o.key() != null) q.append("&key=").append(seg(o.key()));
        if (o.idempotent()) q.append("&idempotent=true");
        return q.toString();
    }

    /** Percent-encodes a path segment or query value (everything but RFC 3986's unreserved characters). */
    static String seg(String s) {
        StringBuilder sb = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
                    || c == '-' || c == '.' || c == '_' || c == '~') {
                sb.append((char) c);
            } else {
                sb.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16)))
                  .append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
            }
        }
        return sb.toString();
    }
}
