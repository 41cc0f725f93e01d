"""OCPP dateTime: ISO 8601 UTC text to and from unix seconds, in pure integer arithmetic."""


def civil(days):
    # Days since 1970-01-01 -> (year, month, day); Howard Hinnant's civil_from_days.
    days += 719468
    era = (days if days >= 0 else days - 146096) // 146097
    doe = days - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return (y + 1 if m <= 2 else y), m, d


def days_from_civil(y, m, d):
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def iso(unix):
    """Unix seconds -> '2026-11-21T13:01:25Z' (UTC, second resolution)."""
    unix = int(unix)
    y, m, d = civil(unix // 86400)
    s = unix % 86400
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, m, d, s // 3600, s // 60 % 60, s % 60)


def parse_iso(text, with_ms=False):
    """'YYYY-MM-DDTHH:MM:SS[.fff][Z|+hh:mm]' -> unix seconds (int), or None if malformed.
    with_ms=True: (seconds, milliseconds 0..999), for setting the clock to the millisecond."""
    if not isinstance(text, str) or len(text) < 19 or text[4] != "-" or text[10] not in "Tt ":
        return None
    try:
        y, mo, d = int(text[0:4]), int(text[5:7]), int(text[8:10])
        h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        rest = text[19:]
        ms = 0
        if rest[:1] == ".":
            i = 1
            while i < len(rest) and rest[i] in "0123456789":
                i += 1
            if i == 1:
                return None
            ms = int((rest[1:i] + "00")[:3])
            rest = rest[i:]
        offset = 0
        if rest in ("Z", "z", ""):
            pass
        elif len(rest) == 6 and rest[0] in "+-" and rest[3] == ":":
            offset = int(rest[1:3]) * 3600 + int(rest[4:6]) * 60
            if rest[0] == "-":
                offset = -offset
        else:
            return None
    except ValueError:
        return None
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        return None
    unix = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset
    return (unix, ms) if with_ms else unix
