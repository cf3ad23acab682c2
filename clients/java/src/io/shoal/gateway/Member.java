package io.shoal.gateway;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Flow;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A running group member (docs/gateway.md section 5, stream mode): a callback
 * server on which the gateway's proxy process forwards the group's calls, and
 * the registration stream that keeps the proxy alive. Made by
 * {@link ShoalGateway#serveMember}.
 *
 * <p>Lifetime: the proxy stays in the group while the stream is open. If this
 * process dies, the stream closes and the callback refuses connections, so
 * the proxy exits and leaves the group (a call that found the callback
 * refused is retried on another member by the gateway). {@link #close()}
 * leaves gracefully: the gateway takes the proxy out of the group and lets
 * the calls in flight finish, then the stream and the server are closed.
 *
 * <p>The callback server accepts only requests carrying a random per-registration
 * token, which the gateway sends back with each call. It runs at most
 * {@code concurrency} handlers at a time with as many requests waiting (the
 * gateway never sends more), and stops accepting connections beyond that.
 */
public final class Member implements AutoCloseable {
    /** How long the gateway has to answer a registration with its {@code registered} event. */
    public static final Duration REGISTER_TIMEOUT = Duration.ofSeconds(10);
    /** How long {@link #close()} waits for the gateway to drain the calls in flight (the longest call timeout, plus a grace). */
    public static final Duration DRAIN_TIMEOUT = CallOptions.MAX_TIMEOUT.plus(ShoalGateway.ANSWER_GRACE);

    private final ShoalGateway gateway;
    private final HttpServer server;
    private final ExecutorService workers;
    private final String callbackToken;
    private final MemberHandler handler;
    private final CompletableFuture<Map<?, ?>> registered = new CompletableFuture<>();
    private final CountDownLatch ended = new CountDownLatch(1);
    private final AtomicInteger inFlight = new AtomicInteger();
    private volatile Flow.Subscription stream;
    private volatile boolean closing;
    private volatile int drained = -1;
    private String id;
    private Pid pid;

    private Member(ShoalGateway gateway, HttpServer server, ExecutorService workers, MemberHandler handler) {
        this.gateway = gateway;
        this.server = server;
        this.workers = workers;
        this.handler = handler;
        byte[] raw = new byte[24];
        new SecureRandom().nextBytes(raw);
        this.callbackToken = new Bin(raw).hex();
    }

    static Member start(ShoalGateway gateway, String scope, String group, MemberHandler handler,
                        int concurrency, InetSocketAddress bind) throws ShoalException {
        HttpServer server;
        try {
            server = HttpServer.create(bind, 0);
        } catch (IOException e) {
            throw new ShoalException("io", "cannot start the callback server on " + bind + ": " + e, false, 0,
                                     null, null, e);
        }
        AtomicInteger n = new AtomicInteger();
        // Bounded: `concurrency` handler threads and as many requests waiting; past that the
        // server's own thread runs the request, so it accepts nothing more until one ends.
        ExecutorService workers = new ThreadPoolExecutor(
                concurrency, concurrency, 0L, TimeUnit.MILLISECONDS, new ArrayBlockingQueue<>(concurrency),
                r -> {
                    Thread t = new Thread(r, "shoal-member-" + group + "-" + n.incrementAndGet());
                    t.setDaemon(true);
                    return t;
                },
                new ThreadPoolExecutor.CallerRunsPolicy());
        Member m = new Member(gateway, server, workers, handler);
        server.createContext("/shoal", m::serve);
        server.setExecutor(workers);
        server.start();
        try {
            m.register(scope, group, concurrency);
        } catch (ShoalException | RuntimeException e) {
            m.shutdownLocal();
            throw e;
        }
        return m;
    }

    /** The registration's id (for {@code DELETE /v1/members/{id}}). */
    public String id() { return id; }

    /** The pid of the proxy process that stands for this member in the group. */
    public Pid pid() { return pid; }

    /** The URL the gateway calls. */
    public String callbackUrl() {
        return "http://" + server.getAddress().getHostString() + ":" + server.getAddress().getPort() + "/shoal";
    }

    /** Calls being handled right now. */
    public int inFlight() { return inFlight.get(); }

    /** How many calls the gateway drained when {@link #close()} left the group; -1 before. */
    public int drained() { return drained; }

    /** Waits until the registration ends (closed, or the gateway went away). */
    public void awaitEnd() throws InterruptedException {
        ended.await();
    }

    /**
     * Waits until the registration ends (closed, or the gateway went away).
     *
     * @return true when it ended within {@code wait}
     */
    public boolean awaitEnd(Duration wait) throws InterruptedException {
        return ended.await(wait.toMillis(), TimeUnit.MILLISECONDS);
    }

    /** True while the registration stream is open. */
    public boolean isOpen() { return ended.getCount() > 0; }

    /**
     * Leaves the group gracefully: asks the gateway to remove the member
     * ({@code DELETE}), which waits until the calls in flight have finished
     * (at most {@link #DRAIN_TIMEOUT}), then closes the stream and the
     * callback server. Idempotent.
     *
     * @throws ShoalException when the gateway could not be asked (the stream is closed anyway,
     *     so the proxy exits, without draining)
     */
    @Override
    public void close() throws ShoalException {
        if (closing) return;
        closing = true;
        try {
            String body = gateway.exchange("DELETE", "/v1/members/" + ShoalGateway.seg(id), null, DRAIN_TIMEOUT);
            Object answer = Json.decode(body);
            Object n = answer instanceof Map ? ((Map<?, ?>) answer).get("drained") : null;
            drained = n instanceof Long ? ((Long) n).intValue() : 0;
        } catch (ShoalException e) {
            if (!"not_found".equals(e.kind())) throw e;  // already gone (the gateway ended it): nothing to drain
            drained = 0;
        } finally {
            shutdownLocal();
        }
    }

    private void shutdownLocal() {
        Flow.Subscription s = stream;
        if (s != null) s.cancel();
        server.stop(0);
        workers.shutdown();
        ended.countDown();
    }

    // ---- the registration stream --------------------------------------------

    private void register(String scope, String group, int concurrency) throws ShoalException {
        Map<String, Object> body = new LinkedHashMap<>();
        body.put("scope", scope);
        body.put("group", group);
        body.put("callback_url", callbackUrl());
        body.put("concurrency", (long) concurrency);
        body.put("callback_token", callbackToken);
        HttpRequest req = gateway.request("/v1/members")
                .header("Content-Type", "application/json")
                .header("Accept", "text/event-stream")
                .POST(HttpRequest.BodyPublishers.ofString(Json.encode(body), StandardCharsets.UTF_8))
                .build();
        CompletableFuture<HttpResponse<String>> sent = gateway.http().sendAsync(req, info -> {
            if (info.statusCode() == 200) {
                return HttpResponse.BodySubscribers.fromLineSubscriber(new Events(), x -> "", StandardCharsets.UTF_8, null);
            }
            return HttpResponse.BodySubscribers.ofString(StandardCharsets.UTF_8);
        });
        sent.whenComplete((resp, err) -> {
            if (err != null) {
                registered.completeExceptionally(err);
            } else if (resp.statusCode() != 200) {
                registered.completeExceptionally(ShoalException.fromAnswer(resp.statusCode(), resp.body()));
            } else {
                registered.completeExceptionally(
                        ShoalGateway.badResponse(200, "the registration stream ended before 'registered'"));
            }
            ended.countDown();
        });
        Map<?, ?> event;
        try {
            event = registered.get(REGISTER_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ShoalException("interrupted", "interrupted while registering", false, 0, null, null, e);
        } catch (TimeoutException e) {
            throw new ShoalException("timeout", "no 'registered' event within " + REGISTER_TIMEOUT.toSeconds()
                                     + " s", false, 0, null, null, e);
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable cause = e.getCause();
            if (cause instanceof ShoalException) throw (ShoalException) cause;
            if (cause instanceof IOException) throw ShoalGateway.transportError((IOException) cause, REGISTER_TIMEOUT);
            throw new ShoalException("io", "registration failed: " + cause, false, 0, null, null, cause);
        }
        Object eid = event.get("id");
        Object epid = event.get("pid");
        if (!(eid instanceof String) || !(epid instanceof Pid)) {
            throw ShoalGateway.badResponse(200, "a 'registered' event without an id and a pid: " + event);
        }
        id = (String) eid;
        pid = (Pid) epid;
    }

    /** Reads the server-sent events of the registration stream, line by line. */
    private final class Events implements Flow.Subscriber<String> {
        /** An event's data is kept up to this many characters (the gateway's are a few dozen). */
        private static final int MAX_EVENT = 64 * 1024;
        private String event = "message";
        private final StringBuilder data = new StringBuilder();

        @Override
        public void onSubscribe(Flow.Subscription subscription) {
            stream = subscription;
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        public void onNext(String line) {
            if (line.isEmpty()) {
                if ("registered".equals(event) && data.length() > 0) {
                    try {
                        Object v = Json.decode(data.toString());
                        if (v instanceof Map) registered.complete((Map<?, ?>) v);
                    } catch (IllegalArgumentException e) {
                        registered.completeExceptionally(
                                ShoalGateway.badResponse(200, "a 'registered' event that is not JSON"));
                    }
                }
                event = "message";
                data.setLength(0);
            } else if (line.startsWith("event:")) {
                event = line.substring(6).trim();
            } else if (line.startsWith("data:") && data.length() < MAX_EVENT) {
                if (data.length() > 0) data.append('\n');
                data.append(line.substring(5).trim());
            }
            // Comment lines (": keep-alive") only keep the connection open.
        }

        @Override
        public void onError(Throwable t) { ended.countDown(); }

        @Override
        public void onComplete() { ended.countDown(); }
    }

    // ---- the callback server ------------------------------------------------

    private void serve(HttpExchange ex) throws IOException {
        try {  // closed by hand: HttpExchange is not AutoCloseable on JDK 11
            if (!"POST".equals(ex.getRequestMethod())) {
                respond(ex, 405, error("MethodNotAllowed", "POST only"));
                return;
            }
            if (!("Bearer " + callbackToken).equals(ex.getRequestHeaders().getFirst("Authorization"))) {
                respond(ex, 401, error("Unauthorized", "not this registration's gateway"));
                return;
            }
            String kind = header(ex, "Shoal-Kind", "call");
            String deadline = header(ex, "Shoal-Deadline-Ms", null);
            String caller = header(ex, "Shoal-Caller", null);
            String member = header(ex, "Shoal-Member", null);
            MemberCall call;
            try (InputStream in = ex.getRequestBody()) {
                Object request = Json.decode(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                call = new MemberCall(kind, request, deadline == null ? -1 : Long.parseLong(deadline),
                                      caller == null ? null : Pid.parse(caller),
                                      member == null ? pid : Pid.parse(member));
            } catch (IllegalArgumentException e) {
                respond(ex, 400, error("BadRequest", e.getMessage()));
                return;
            }
            inFlight.incrementAndGet();
            try {
                respond(ex, 200, Json.encode(handler.handle(call)));
            } catch (Rejected e) {
                Map<String, Object> err = new HashMap<>();
                err.put("message", e.getMessage());
                respond(ex, 422, Json.encode(Map.of("error", err)));
            } catch (Exception e) {
                respond(ex, 500, error(e.getClass().getName(), String.valueOf(e.getMessage())));
            } finally {
                inFlight.decrementAndGet();
            }
        } finally {
            ex.close();
        }
    }

    private static String header(HttpExchange ex, String name, String otherwise) {
        List<String> v = ex.getRequestHeaders().get(name);
        return v == null || v.isEmpty() ? otherwise : v.get(0);
    }

    private static String error(String type, String message) {
        Map<String, Object> err = new LinkedHashMap<>();
        err.put("type", type);
        err.put("message", message);
        return Json.encode(Map.of("error", err));
    }

    private static void respond(HttpExchange ex, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }
}
