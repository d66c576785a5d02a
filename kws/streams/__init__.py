"""The stream the board hears: the front end over a recording in blocks with its state carried,
the command recognizer, long test recordings built from a split with their ground truth, and
the keyword recall / false alarms per hour they are scored by. Used by listen, the export's
recognizer calibration, the stream test and the firmware check."""
