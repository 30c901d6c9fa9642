"""The entry adapters the function folders call: the queue (``queue``), the admin HTTP routes (``admin_http``) and
the timers (``timers``). Each decodes its trigger, calls one use case with clients from ``shared.app``, and maps the
outcome; nothing here decides anything."""
