package io.shoal.gateway;

/**
 * Thrown by a {@link MemberHandler} to reject a request as bad: the caller
 * gets the {@code rejected} kind (422) with this message, and the member
 * stays up. Any other exception is a crash of the handler ({@code crash}).
 */
public class Rejected extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public Rejected(String message) { super(message); }
}
