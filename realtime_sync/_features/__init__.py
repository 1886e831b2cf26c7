"""What the features share (private; above :mod:`realtime_sync._core`, below the public
feature modules and the command line).

The parts live objects are built from:

* ``live_session`` -- :class:`LiveParts` (lock, marshal, raw handlers, owned streams) and
  :class:`SessionLink` (a RealtimeClient session: connecting, session number, sending,
  expiry and rollover);
* ``ring`` -- :class:`AudioRing`, the audio kept for replays (positions, trimming), with
  ``drops`` counting what it loses;
* ``turn_modes`` -- how a transcription ends its turns (manual, server VAD, client VAD, whose
  detector is in ``turns``);
* ``feed`` -- the audio host a stream feeds a live object through; ``ticker`` -- its clock.

The Live API's connection and transcript grouping (``live_connection``,
``live_transcript``); files and batches (``audio_files``, ``file_job``, ``cluster``); what
the command line and apps show (``progress``, ``reconnects``, ``languages``).
"""
