package io.shoal.gateway;

import java.util.List;

/** A group's members as the gateway's node sees them: all, and those it would route to now. */
public final class Members {
    private final String scope;
    private final String group;
    private final List<Pid> members;
    private final List<Pid> routable;

    Members(String scope, String group, List<Pid> members, List<Pid> routable) {
        this.scope = scope;
        this.group = group;
        this.members = List.copyOf(members);
        this.routable = List.copyOf(routable);
    }

    public String scope() { return scope; }
    public String group() { return group; }
    /** Every member, once per join. */
    public List<Pid> members() { return members; }
    /** The members on nodes this node does not suspect: those a call may pick. */
    public List<Pid> routable() { return routable; }

    @Override
    public String toString() { return scope + "/" + group + " members=" + members + " routable=" + routable; }
}
