"""Which bridge instance owns which charger: a hash both Python and an AWS IoT rule compute.

A charger belongs to shard `int(md5(id)[:4], 16) % N`: the first four hex digits of the MD5 of
its id (UTF-8, lower-case hex), read as a number 0..65535, modulo the number of instances N.
AWS IoT rule SQL has `md5()` but no hex-to-number function; `indexof('0123456789abcdef', c)`
turns one hex digit into its value, so the rule computes the same number digit by digit
(`rule_sql`). Every instance must be given the same N: to change it, stop every instance, then
start the new set (two instances with different N could both own a charger).

A pool of K MQTT connections per instance (AWS IoT allows 100 publishes a second per
connection) splits a shard further: charger `id` goes over connection
`(h % (N*K)) // N` of its instance, h being the number above. h % (N*K) is its bucket, one of
N*K, and bucket b belongs to instance b % N: an AWS rule per bucket (`rule_sql(b, N*K)`)
republishes to `bridge/<b>/<id>/in`, and connection k of instance I reads bucket I + N*k.
"""
import hashlib

HEX_DIGITS = 4  # 16 bits: N up to a few thousand instances stays even
RULE_TOPIC = "bridge/%d/%s/in"  # where the rule republishes a charger's frames (shard, id)
_HEX = "0123456789abcdef"


def parse(text):
    """"I/N" -> (I, N); ValueError unless 0 <= I < N."""
    index, sep, count = text.partition("/")
    index, count = int(index), int(count) if sep else 0
    if not 0 <= index < count:
        raise ValueError("a shard is I/N with 0 <= I < N, got %r" % text)
    return index, count


def _number(charger_id):
    return int(hashlib.md5(charger_id.encode("utf-8")).hexdigest()[:HEX_DIGITS], 16)


def shard_of(charger_id, count):
    """The shard (0..count-1) charger `charger_id` belongs to."""
    return _number(charger_id) % count


def connection_of(charger_id, count, connections):
    """Which of its instance's `connections` carries charger `charger_id`."""
    return _number(charger_id) % (count * connections) // count


def bucket(index, count, connection):
    """The bucket connection `connection` of instance `index` (of `count`) reads."""
    return index + count * connection


def _sql_number(expression):
    """AWS IoT SQL for int(md5(expression)[:HEX_DIGITS], 16)."""
    digits = ["indexof('%s', substring(lower(md5(%s)), %d, %d)) * %d"
              % (_HEX, expression, i, i + 1, 16 ** (HEX_DIGITS - 1 - i))
              for i in range(HEX_DIGITS)]
    return " + ".join(digits)


def rule_sql(index, count):
    """The SQL of the AWS IoT rule that hands shard (or bucket) `index` of `count` its
    chargers' frames; its Republish action writes to RULE_TOPIC with `${topic(1)}` as the id."""
    return ("SELECT * FROM '+/in' WHERE mod(%s, %d) = %d"
            % (_sql_number("topic(1)"), count, index))


def republish_topic(index):
    """The Republish action's topic template for shard `index`."""
    return RULE_TOPIC % (index, "${topic(1)}")
