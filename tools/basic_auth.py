"""HTTP Basic authorization of OCPP-J security profiles 1 and 2, as the firmware sends it
(lib/chargepoint/transport/websocket.py): shared by the development Central System, which
checks it, and the fleet bridge, which sends it on each charger's behalf."""
import base64
import string


def authorization_password(key):
    """The HTTP Basic password for AuthorizationKey `key` (bytes): hex-decoded when it is 32..40
    hex digits, else its 16..20 characters as UTF-8. ValueError for any other key."""
    if 32 <= len(key) <= 40 and len(key) % 2 == 0 and all(c in string.hexdigits for c in key):
        return bytes.fromhex(key)
    if 16 <= len(key) <= 20:
        return key.encode("utf-8")
    raise ValueError("an AuthorizationKey is 32..40 hex digits or 16..20 characters, got %d "
                     "characters" % len(key))


def basic_authorization(charger_id, key):
    """The `Authorization` header value a charger with AuthorizationKey `key` sends."""
    token = charger_id.encode("utf-8") + b":" + authorization_password(key)
    return "Basic " + base64.b64encode(token).decode("ascii")
