"""The development Central System's commands: one table for both its front ends, the command line
of tools.csms (tools.csms_cli: each command names its charger first) and `make sim`
(tools.devsim: one charger; it adds the simulator's commands to the same table)."""
import asyncio
import json

from ocpp.exceptions import OCPPError

DEFAULT_TAG = "04A1B2C3D4E5F6"  # the card the development Central System accepts


class Usage(Exception):
    """The arguments do not fit the command: its usage line is printed."""


class Command:
    """One command: its name and aliases, `usage` (the words after it, the charger's excepted),
    `summary` (its line of help), `least` and `most` argument words (most None: any number),
    and `run(front, charger_id, args)`, a coroutine function giving what to print: text, a
    dict (printed as JSON) or None. `show(result)`, when given, turns a result into text for
    people (a front end with `pretty`). `charger`: it acts on one charger, which the command
    line names before the arguments."""

    def __init__(self, name, usage, summary, run, least=0, most=None, aliases=(), charger=True,
                 show=None):
        self.name, self.usage, self.summary, self.run = name, usage, summary, run
        self.least, self.most = least, most
        self.aliases = tuple(aliases)
        self.charger = charger
        self.show = show

    def syntax(self, named):
        """The command as typed: name | aliases, CP when the line `named` the charger, the
        arguments."""
        words = [" | ".join((self.name,) + self.aliases)]
        if self.charger and named:
            words.append("CP")
        if self.usage:
            words.append(self.usage)
        return " ".join(words)


class Table:
    """Commands by name and alias, in the order their help lists them."""

    def __init__(self, commands):
        self.commands = list(commands)
        self.names = {}
        for command in self.commands:
            for name in (command.name,) + command.aliases:
                if name in self.names:
                    raise ValueError("two commands named %r" % name)
                self.names[name] = command

    def extended(self, commands):
        """A table with `commands` too, listed first."""
        return Table(list(commands) + self.commands)

    def find(self, word):
        return self.names.get(word.lower())

    def help(self, named):
        """The list of commands; `named`: each line names its charger."""
        rows = [(c.syntax(named), c.summary) for c in self.commands]
        width = min(max(len(s) for s, _ in rows), 34)  # a longer one pushes its summary on
        return "commands (one per line):\n" + "\n".join(
            "  %s  %s" % (s.ljust(width), summary) for s, summary in rows)


class Front:
    """What a front end gives the commands. `cs`: the Central System (tools.csms); `table`:
    its commands; `charger`: the one charger it drives, or None when each command names it;
    `connector`: the connector a command acts on when it names none (None: the charger
    chooses); `pretty`: results shown for people (else JSON, for pipes and logs)."""

    cs = None
    table = None
    charger = None
    connector = None
    pretty = False

    def quit(self):
        """Stop the front end; what to print (or None)."""
        raise NotImplementedError

    def transaction_id(self, cp_id):
        """The charger's running transaction as the Central System saw it start, or None."""
        charger = self.cs.chargers.get(cp_id)
        for tx in reversed(list(charger.transactions.values()) if charger else []):
            if not tx.stopped:
                return tx.id
        return None


async def execute(front, line):
    """Run one command line; the text to print, or None. A single-line answer is labelled with
    its command line (answers come back in any order); a CALLERROR, a timeout, a lost socket
    become one line, never a traceback."""
    words = line.split()
    if not words:
        return None
    label = " ".join(words)
    command = front.table.find(words[0])
    if command is None:
        return "%s: unknown command %r; type help" % (label, words[0])
    try:
        args = words[1:]
        charger = front.charger
        if command.charger and charger is None:
            if not args:
                raise Usage()
            charger, args = args[0], args[1:]
        if len(args) < command.least or (command.most is not None and len(args) > command.most):
            raise Usage()
        result = await command.run(front, charger, args)
        if result is not None and command.show and front.pretty:
            text = command.show(result)
            if text:
                return "%s:\n%s" % (label, text)
    except asyncio.CancelledError:
        raise
    except Usage:
        result = "usage: %s" % command.syntax(front.charger is None)
    except ValueError as e:
        result = "bad argument: %s" % e
    except OCPPError as e:
        result = ("%s: %s %s" % (e.code, e.description, e.details or "")).rstrip()
    except asyncio.TimeoutError:
        result = "no answer in time"
    except Exception as e:  # a lost socket, ...
        result = "%s: %s" % (type(e).__name__, e)
    if result is None:
        return None
    if isinstance(result, dict):
        result = json.dumps(result)
    return result if "\n" in result else "%s: %s" % (label, result)


def number(word):
    try:
        return int(word)
    except ValueError:
        raise Usage() from None


def _optional(words, index):
    return number(words[index]) if len(words) > index else None


async def _remote_start(front, cp, w):
    connector = _optional(w, 1)
    return await front.cs.remote_start(cp, w[0] if w else DEFAULT_TAG,
                                       front.connector if connector is None else connector)


async def _remote_stop(front, cp, w):
    tx = number(w[0]) if w else front.transaction_id(cp)
    if tx is None:
        return "no transaction running"
    return await front.cs.remote_stop(cp, tx)


async def _reset(front, cp, w):
    if w[0].lower() not in ("soft", "hard"):
        raise Usage()
    return await front.cs.reset(cp, w[0].lower())


def configuration_rows(result):
    """GetConfiguration.conf as `KEY = VALUE` lines ("" if it has none)."""
    rows = ["  %s = %s%s" % (k.get("key"), k.get("value"), " (read-only)" if k.get("readonly")
                             else "") for k in result.get("configurationKey") or []]
    if result.get("unknownKey"):
        rows.append("  unknown: " + ", ".join(result["unknownKey"]))
    return "\n".join(rows)


def describe(cs):
    """The `list` command's text."""
    if not cs.chargers:
        return "no charger has spoken yet"
    lines = []
    for charger in cs.chargers.values():
        lines.append("%s: %d boot(s), %d heartbeat(s)" % (
            charger.id, len(charger.boots), charger.heartbeats))
        for connector_id, status in sorted(charger.statuses.items()):
            lines.append("  connector %s: %s %s" % (
                connector_id, status.get("status"), status.get("errorCode")))
        for tx in charger.transactions.values():
            state = "stopped (%s, meterStop %s)" % (tx.reason, tx.meter_stop) if tx.stopped \
                else "active"
            lines.append("  transaction %s on connector %s, idTag %s, meterStart %s, %d meter "
                         "value(s): %s" % (tx.id, tx.connector_id, tx.id_tag, tx.meter_start,
                                           len(tx.meter_values), state))
    return "\n".join(lines)


async def _help(front, cp, w):
    return front.table.help(front.charger is None)


async def _quit(front, cp, w):
    return front.quit()


async def _list(front, cp, w):
    return describe(front.cs)


TABLE = Table([
    Command("remote-start", "[ID_TAG [CONNECTOR]]",
            "RemoteStartTransaction (default idTag %s)" % DEFAULT_TAG, _remote_start, 0, 2),
    Command("remote-stop", "[TRANSACTION_ID]",
            "RemoteStopTransaction (default: the running transaction)", _remote_stop, 0, 1),
    Command("get-config", "[KEY ...]", "GetConfiguration",
            lambda f, cp, w: f.cs.get_configuration(cp, w or None), aliases=("get",),
            show=configuration_rows),
    Command("set-config", "KEY VALUE", "ChangeConfiguration",
            lambda f, cp, w: f.cs.change_configuration(cp, w[0], " ".join(w[1:])), 2,
            aliases=("config",)),
    Command("reset", "soft|hard", "Reset", _reset, 1, 1),
    Command("trigger", "MESSAGE [CONNECTOR]",
            "TriggerMessage (BootNotification, StatusNotification, Heartbeat, MeterValues, ...)",
            lambda f, cp, w: f.cs.trigger_message(cp, w[0], _optional(w, 1)), 1, 2),
    Command("availability", "CONNECTOR Operative|Inoperative", "ChangeAvailability",
            lambda f, cp, w: f.cs.change_availability(cp, number(w[0]), w[1]), 2, 2),
    Command("unlock", "CONNECTOR", "UnlockConnector",
            lambda f, cp, w: f.cs.unlock_connector(cp, number(w[0])), 1, 1),
    Command("clear-cache", "", "ClearCache", lambda f, cp, w: f.cs.clear_cache(cp), 0, 0),
    Command("data-transfer", "VENDOR [MESSAGE_ID [DATA]]", "DataTransfer",
            lambda f, cp, w: f.cs.data_transfer(cp, w[0], w[1] if len(w) > 1 else None,
                                                w[2] if len(w) > 2 else None), 1, 3),
    Command("list", "", "chargers, connector statuses, transactions", _list, 0, 0,
            charger=False),
    Command("help", "", "this list", _help, aliases=("h", "?"), charger=False),
    Command("quit", "", "stop everything", _quit, aliases=("q", "exit"), charger=False),
])
