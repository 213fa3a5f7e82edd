"""The web console: sagas, stuck sagas, a saga's timeline and trace, dead letters, stock.

``choreo console`` (or ``python -m choreo.console``) serves server-rendered pages on 127.0.0.1;
``choreo up`` starts it as a supervised process beside the services. It reads each
service's data only through that service's store or catalog module (and dead letters
through ``outbox.deadletter``), and changes nothing but dead-letter *requests*, which the
owning consumer carries out.
"""
