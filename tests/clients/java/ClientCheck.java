import io.shoal.gateway.Bin;
import io.shoal.gateway.CallOptions;
import io.shoal.gateway.Crash;
import io.shoal.gateway.Json;
import io.shoal.gateway.Member;
import io.shoal.gateway.Members;
import io.shoal.gateway.Pid;
import io.shoal.gateway.Rejected;
import io.shoal.gateway.ShoalException;
import io.shoal.gateway.ShoalGateway;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The Java client's test program, driven by tests/clients/test_java.py.
 *
 *   mapping                 one JSON document a line on stdin; prints per line
 *                           "ok <tagged term> <re-encoded JSON>" or "refused <why>"
 *   errors                  "STATUS<tab>BODY" a line on stdin (an error answer); prints per line
 *                           "<kind> <retrySafe> <remoteType> <status> <member>"
 *   call SCOPE GROUP JSON [STRATEGY]   prints "reply <JSON>" or "error <kind> <retrySafe> <remoteType> <status>"
 *   tour                    members, callPid, cast, castPid, send and three errors on the
 *                           cluster's "echo" and "slow" groups; prints one line each
 *   member SCOPE GROUP CONCURRENCY     serves as a member until stdin closes or SIGTERM
 *                           (a graceful close); prints "registered <id> <pid> <callback URL>", then "drained <n>".
 *                           It replies ["java", request]; a request {"sleep": s} waits s seconds
 *                           first, and one with a key "held" is printed ("handling <JSON>") on arrival.
 */
public final class ClientCheck {
    public static void main(String[] args) throws Exception {
        switch (args[0]) {
            case "mapping": mapping(); break;
            case "errors": errors(); break;
            case "call": call(args); break;
            case "tour": tour(); break;
            case "member": member(args); break;
            default: throw new IllegalArgumentException(args[0]);
        }
    }

    private static void mapping() throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            try {
                Object term = Json.decode(line);
                StringBuilder tagged = new StringBuilder();
                tag(term, tagged);
                System.out.println("ok\t" + tagged + "\t" + Json.encode(term));
            } catch (IllegalArgumentException e) {
                System.out.println("refused\t" + e.getMessage().replace('\t', ' ').replace('\n', ' '));
            }
        }
    }

    private static void errors() throws Exception {
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        for (String line = in.readLine(); line != null; line = in.readLine()) {
            String[] parts = line.split("\t", 2);
            ShoalException e = ShoalException.fromAnswer(Integer.parseInt(parts[0]), parts[1]);
            System.out.println(e.kind() + " " + e.retrySafe() + " " + e.remoteType() + " " + e.status()
                               + " " + e.member());
        }
    }

    /** The term with its Java type made explicit, as JSON: ["int", 5], ["pid", node, c, s], ... */
    private static void tag(Object t, StringBuilder sb) {
        if (t == null) { sb.append("[\"null\"]"); return; }
        if (t instanceof Boolean) { sb.append("[\"bool\",").append(t).append(']'); return; }
        if (t instanceof Long || t instanceof java.math.BigInteger) { sb.append("[\"int\",").append(t).append(']'); return; }
        if (t instanceof Double) { sb.append("[\"float\",").append(Json.encode(t)).append(']'); return; }
        if (t instanceof String) { sb.append("[\"str\",").append(Json.encode(t)).append(']'); return; }
        if (t instanceof Bin) { sb.append("[\"bin\",\"").append(((Bin) t).hex()).append("\"]"); return; }
        if (t instanceof Pid) {
            Pid p = (Pid) t;
            sb.append("[\"pid\",").append(Json.encode(p.node())).append(',').append(p.creation())
              .append(',').append(p.serial()).append(']');
            return;
        }
        if (t instanceof Crash) {
            Crash c = (Crash) t;
            sb.append("[\"crash\",").append(Json.encode(List.of(c.type(), c.message(), c.traceback())).substring(1));
            return;
        }
        if (t instanceof List) {
            sb.append("[\"list\",[");
            String sep = "";
            for (Object item : (List<?>) t) { sb.append(sep); tag(item, sb); sep = ","; }
            sb.append("]]");
            return;
        }
        if (t instanceof Map) {
            sb.append("[\"map\",[");
            String sep = "";
            for (Map.Entry<?, ?> e : ((Map<?, ?>) t).entrySet()) {
                sb.append(sep).append('[');
                tag(e.getKey(), sb);
                sb.append(',');
                tag(e.getValue(), sb);
                sb.append(']');
                sep = ",";
            }
            sb.append("]]");
            return;
        }
        throw new IllegalStateException("a decoded term of an unexpected class " + t.getClass());
    }

    private static void call(String[] args) throws Exception {
        ShoalGateway gw = ShoalGateway.fromEnv();
        CallOptions options = CallOptions.defaults();
        if (args.length > 4) options = options.withStrategy(args[4]);
        try {
            System.out.println("reply " + Json.encode(gw.call(args[1], args[2], Json.decode(args[3]), options)));
        } catch (ShoalException e) {
            System.out.println("error " + e.kind() + " " + e.retrySafe() + " " + e.remoteType() + " " + e.status());
        }
    }

    private static void tour() throws Exception {
        ShoalGateway gw = ShoalGateway.fromEnv();
        Members m = gw.members("default", "echo");
        System.out.println("members " + m.members().size() + " " + m.routable().size());
        Pid first = m.members().get(0);
        System.out.println("callPid " + Json.encode(gw.callPid(first, "hi")));
        System.out.println("cast " + m.members().contains(gw.cast("default", "echo", "c")));
        gw.castPid(first, "c");
        System.out.println("castPid ok");
        gw.send(first, "i");
        System.out.println("send ok");
        String[] names = {"dead", "empty", "slow", "tiny"};
        for (String name : names) {
            try {
                if (name.equals("dead")) gw.callPid(new Pid(first.node(), first.creation(), 999999), "x");
                if (name.equals("empty")) gw.call("default", "nobody", 1, CallOptions.defaults());
                if (name.equals("slow")) {
                    gw.call("default", "slow", 2.0, CallOptions.defaults().withTimeout(Duration.ofMillis(500)));
                }
                if (name.equals("tiny")) {
                    gw.call("default", "slow", 2.0, CallOptions.defaults().withTimeout(Duration.ofNanos(1)));
                }
                System.out.println(name + " no error");
            } catch (ShoalException e) {
                System.out.println(name + " " + e.kind() + " " + e.retrySafe() + " " + e.status());
            }
        }
    }

    private static void member(String[] args) throws Exception {
        ShoalGateway gw = ShoalGateway.fromEnv();
        Member member = gw.serveMember(args[1], args[2], call -> {
            Object request = call.request();
            if (request instanceof Map && ((Map<?, ?>) request).containsKey("held")) {
                System.out.println("handling " + Json.encode(request));
                System.out.flush();
            }
            if (request instanceof Map && ((Map<?, ?>) request).get("sleep") instanceof Number) {
                Thread.sleep((long) (((Number) ((Map<?, ?>) request).get("sleep")).doubleValue() * 1000));
            }
            if ("reject me".equals(request)) throw new Rejected("rejected as asked");
            if ("crash me".equals(request)) throw new IllegalStateException("crashed as asked");
            List<Object> reply = new ArrayList<>();
            reply.add("java");
            reply.add(request);
            return reply;
        }, Integer.parseInt(args[3]));
        Thread closer = new Thread(() -> {
            try {
                member.close();
                System.out.println("drained " + member.drained());
            } catch (ShoalException e) {
                System.out.println("close failed " + e.kind());
            }
            System.out.flush();
        });
        Runtime.getRuntime().addShutdownHook(closer);
        System.out.println("registered " + member.id() + " " + member.pid() + " " + member.callbackUrl());
        System.out.flush();
        // Serve until stdin closes (the test's way to stop it) or a signal runs the hook.
        while (System.in.read() >= 0) {
            continue;
        }
        member.awaitEnd(Duration.ZERO);
        System.exit(0);
    }
}
