"""
Following a tor's bootstrap over its control connection: reporting each
step as Foolscap status, and diagnosing a stall (no progress for
C{bootstrap_timeout} seconds) as a L{TorBootstrapError} that says what tor
reported, where its log is and what to check.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from ._common import _quietly, _UntilClosed
from ._errors import TorBootstrapError
from ._status import _Bootstrap

#: How long tor may go without bootstrap progress (its percentage not
#: rising) before dials and L{listen} fail with L{TorBootstrapError}: a tor
#: that cannot reach the network otherwise keeps everyone waiting, silently.
BOOTSTRAP_TIMEOUT = 60.0


def _stalled(seconds: float, state: _Bootstrap, log_hint: str, launched: bool) -> str:
    """What L{TorBootstrapError} says: what tor reports, its log, what to check."""
    if launched:
        bridges = "in launch()'s extra_config"
        other = (
            "or try this machine's own tor instead of launching one ([tor] launch = false "
            "and [tor] control.port, or control_endpoint())"
        )
    else:
        bridges = "in that tor's torrc"
        other = "or compare with a tor launched here ([tor] launch = true, or launch())"
    if state.percent < 0:
        progress = "it reported none at all"
    else:
        progress = "it is at %d%% (%s)" % (state.percent, state.summary or "no summary")
    return (
        "tor made no bootstrap progress for %g s: %s. Its last warning: %s. %s. "
        "Check that this machine can reach the internet (is the network up?) and that no "
        "firewall or proxy blocks tor's outgoing connections (relays listen on ports such as "
        "443 and 9001); where tor is blocked, it needs bridges (UseBridges 1 and Bridge lines, "
        "%s); %s. To keep waiting instead, set bootstrap_timeout=None (in a node's configuration: "
        "[tor] bootstrap.timeout = none)"
        % (seconds, progress, state.warning(), log_hint, bridges, other)
    )


async def _wait_for_bootstrap(
    reactor: IReactorTime,
    protocol: Any,
    report: Callable[[str], None],
    where: str,
    timeout: Optional[float] = None,
    log_hint: str = "",
    launched: bool = False,
) -> None:
    """
    Until tor has bootstrapped, reporting its progress; fails with
    L{TorBootstrapError} once the progress has not risen for C{timeout}
    seconds (L{None}: waits as long as it takes).
    """
    waiting = _UntilClosed(
        protocol,
        "the control connection to %s closed while waiting for tor to bootstrap "
        "(did tor exit?)" % (where,),
    )
    done = waiting.result
    state = _Bootstrap()
    reported: list[str] = []

    def stalled() -> None:
        if not done.called:
            done.errback(
                TorBootstrapError(
                    _stalled(timeout or 0.0, state, log_hint or where, launched),
                    percent=max(state.percent, 0),
                    problem=state.problem,
                )
            )

    timer = reactor.callLater(timeout, stalled) if timeout is not None else None

    def seen(text: str) -> None:
        if done.called:
            return
        rose = state.seen(text)
        if state.percent >= 100:
            done.callback(None)
            return
        if rose and timer is not None and timeout is not None and timer.active():
            timer.reset(timeout)  # progress: the clock starts again
        status = state.status()
        if state.percent >= 0 and status not in reported[-1:]:
            reported.append(status)
            report(status)

    def phase(answer: dict[str, str]) -> None:
        seen(answer.get("status/bootstrap-phase", ""))

    def failed(f: Failure) -> None:
        if not done.called:
            done.errback(f)

    def ask(_: Any) -> None:
        protocol.get_info("status/bootstrap-phase").addCallbacks(phase, failed)

    try:
        # Only C{done} is awaited: a tor that never answers is bounded by
        # the timer too.
        protocol.add_event_listener("STATUS_CLIENT", seen).addCallbacks(ask, failed)
        await done
    finally:
        if timer is not None and timer.active():
            timer.cancel()
        if waiting.finish():
            _quietly(protocol.remove_event_listener("STATUS_CLIENT", seen))
