"""The live reply engine: everything between a Send and a reply's stored end.

Start at `intents.py` (one entry point per thing a person can do to a reply, shared by the websocket
`consumer.py` and the no-JS views), then `generation.py` (the server-owned task that streams one reply
from `claude.py`, the only module that talks to the API). What a call is sent is read in `history.py`;
every write of a reply's life is in `store.py` (and `branches.py` for versions); `leases.py`, `relay.py`
and `shutdown.py` keep replies alive across slow workers, other workers and restarts.
"""
