"""Structured logs: one JSON object a line, with the charger id and the event where known."""
import datetime
import json
import logging

_FIELDS = ("charger", "event")


class JsonFormatter(logging.Formatter):
    def format(self, record):
        line = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for field in _FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                line[field] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


class ChargerLog(logging.LoggerAdapter):
    """A logger that adds `charger` to every record, keeping the call's own extra fields."""

    def process(self, msg, kwargs):
        kwargs["extra"] = dict(self.extra, **kwargs.get("extra", {}))
        return msg, kwargs


def setup(level="INFO"):
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(logging.WARNING)
