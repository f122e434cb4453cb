"""
The states of a relayed listening port, as C{RelayListenerEndpoint.state}
reports them.
"""

#: Dialing the relay, or registered there and waiting for its answer.
CONNECTING = "connecting"
#: Registered: dialers get through.
REGISTERED = "registered"
#: Waiting to retry, after a failure (see C{last_error}).
WAITING = "waiting"
#: Not listening.
STOPPED = "stopped"
