package io.shoal.gateway;

/** One request delivered to a member: what it is, its body, and from whom. */
public final class MemberCall {
    private final String kind;
    private final Object request;
    private final long deadlineMs;
    private final Pid caller;
    private final Pid member;

    MemberCall(String kind, Object request, long deadlineMs, Pid caller, Pid member) {
        this.kind = kind;
        this.request = request;
        this.deadlineMs = deadlineMs;
        this.caller = caller;
        this.member = member;
    }

    /** {@code call}, {@code cast} or {@code info} (a plain message). */
    public String kind() { return kind; }
    /** The request, decoded by the JSON mapping. */
    public Object request() { return request; }
    /** Milliseconds left before the caller gives up when the call arrived; -1 for casts and messages. */
    public long deadlineMs() { return deadlineMs; }
    /** The caller's pid, when it has one; else null. */
    public Pid caller() { return caller; }
    /** The pid this member has in the group. */
    public Pid member() { return member; }
}
