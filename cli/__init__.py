"""The top floor: the ``choreo`` command line. Nothing below it imports from here."""
