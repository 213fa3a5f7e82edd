"""Avro schemas of every choreo event, one file per event type and version.

Layout: ``schemas/<aggregate>/<EventType>.v<N>.avsc``; the record is named ``EventType``
in namespace ``choreo.<aggregate>``, and events go to topic ``<aggregate>.events``.
"""
