%% Echo gen_server and call benchmark, the Erlang/OTP side of bench/remote_call.py.
%%
%% The server node runs start/0 (an echo gen_server registered as shoal_bench_echo);
%% the client node runs main/1 with [ServerNode, Calls, Concurrency...] and prints
%% "erlang_<name>: <value>" lines that remote_call.py reads.
-module(shoal_bench_echo).
-behaviour(gen_server).
-export([start/0, main/1]).
-export([init/1, handle_call/3, handle_cast/2]).

start() ->
    {ok, _} = gen_server:start({local, ?MODULE}, ?MODULE, [], []),
    receive stop -> ok end.

init([]) -> {ok, nostate}.
handle_call(Request, _From, State) -> {reply, Request, State}.
handle_cast(_Msg, State) -> {noreply, State}.

main([ServerNode, CallsArg | ConcArgs]) ->
    Server = {?MODULE, list_to_atom(atom_to_list(ServerNode))},
    Calls = list_to_integer(atom_to_list(CallsArg)),
    pong = net_adm:ping(list_to_atom(atom_to_list(ServerNode))),
    %% warm up
    [gen_server:call(Server, I) || I <- lists:seq(1, 2000)],
    Lat = latencies(Server, Calls),
    Sorted = lists:sort(Lat),
    io:format("erlang_p50_us: ~.3f~n", [pct(Sorted, 50)]),
    io:format("erlang_p99_us: ~.3f~n", [pct(Sorted, 99)]),
    lists:foreach(
      fun(CArg) ->
              C = list_to_integer(atom_to_list(CArg)),
              Rate = throughput(Server, C, Calls),
              io:format("erlang_throughput_~b: ~.1f~n", [C, Rate])
      end, ConcArgs),
    halt(0).

latencies(Server, N) ->
    [begin
         T0 = erlang:monotonic_time(nanosecond),
         I = gen_server:call(Server, I),
         (erlang:monotonic_time(nanosecond) - T0) / 1000
     end || I <- lists:seq(1, N)].

pct(Sorted, Q) ->
    Len = length(Sorted),
    Index = max(1, min(Len, round(Q / 100 * (Len - 1)) + 1)),
    lists:nth(Index, Sorted).

throughput(Server, Callers, Total) ->
    Per = Total div Callers,
    Self = self(),
    T0 = erlang:monotonic_time(nanosecond),
    Pids = [spawn_link(fun() ->
                               [gen_server:call(Server, I) || I <- lists:seq(1, Per)],
                               Self ! {done, self()}
                       end) || _ <- lists:seq(1, Callers)],
    [receive {done, P} -> ok end || P <- Pids],
    Secs = (erlang:monotonic_time(nanosecond) - T0) / 1.0e9,
    Per * Callers / Secs.
