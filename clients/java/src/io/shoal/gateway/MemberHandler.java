package io.shoal.gateway;

/**
 * Handles the calls, casts and plain messages sent to a member registered
 * with {@link ShoalGateway#serveMember}. Up to the registration's
 * concurrency run at a time, each on its own thread.
 *
 * <p>Return the reply (any value of the JSON mapping; ignored for casts and
 * messages). Throw {@link Rejected} to reject a bad request; any other
 * exception is a crash, which the caller sees as the {@code crash} kind with
 * the exception's class as {@code remoteType}.
 */
@FunctionalInterface
public interface MemberHandler {
    Object handle(MemberCall call) throws Exception;
}
