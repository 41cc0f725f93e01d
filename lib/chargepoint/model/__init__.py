"""The charger model: connectors, sessions, transactions and the feature profiles on the core.

It imports only the protocol core (chargepoint.ocpp). What it is handed (board, transport,
store, clock) is documented in chargepoint.model.chargepoint and chargepoint.model.board.
"""
