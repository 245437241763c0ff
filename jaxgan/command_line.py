"""The command line's mistakes, each one line on stderr (`error: ...`) and exit status 2.

absl and ml_collections' config flags parse the command line; what they report badly is
caught here first: the space-separated forms (`--config X`, `--config.field value`) are
joined into `--flag=value`, the config file is loaded once by us so that a missing file, a
syntax error (with its file and line), a file without `get_config`, a `get_config` that raises
or returns something else, and an unknown variant are one line each; overrides must name a
field of that config; and every error absl raises while parsing (a value of the wrong type, an
unknown flag, a missing --workdir, an unknown --mode) is turned into one line.
"""

import contextlib
import inspect
import os
import sys
import traceback

import ml_collections
from absl import flags

from jaxgan.choices import MISSING, close_match, field_at, renamed_message

USAGE = 2  # exit status of a command-line mistake, as argparse and absl use it
MAX_CONFIG_FILE_BYTES = 1 << 20  # a config file is a short Python file
HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")
MODES = ("train", "eval", "predict")
PREDICT_FLAGS = ("images", "threshold", "output")  # read by --mode=predict only
# The flags of a multi-process run; each needs --distributed.
PROCESS_FLAGS = ("coordinator_address", "num_processes", "process_id", "distributed_timeout")
MAX_DISTRIBUTED_TIMEOUT_S = 86400
_TRUE_FALSE = ("true", "false", "True", "False", "1", "0")


class UsageError(Exception):
    """A command-line mistake; `message` is one line."""


def fail(message: str):
    """Prints `error: message` (one line) on stderr and exits with status 2."""
    print(f"error: {_one_line(message)}", file=sys.stderr)
    sys.exit(USAGE)


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)  # "-1" and "-1e-4" are values
    except ValueError:
        return True
    return False


def _name(token: str) -> str:
    """'--config.a.b=1' -> 'config.a.b'."""
    return token.lstrip("-").split("=", 1)[0]


def _join_values(argv: list[str], takes_value) -> list[str]:
    """`--name value` -> `--name=value` for every flag `takes_value(name)` accepts (True: a
    value is required; "optional": joined only when the next token is true/false)."""
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--":  # everything after is positional
            return out + argv[i:]
        wants = takes_value(_name(token)) if _is_flag(token) and "=" not in token else False
        following = argv[i + 1] if i + 1 < len(argv) else None
        if wants is True:
            if following is None or _is_flag(following):
                raise UsageError(f"{token} needs a value: {token}=VALUE")
            out.append(f"{token}={following}")
            i += 2
        elif wants == "optional" and following in _TRUE_FALSE:
            out.append(f"{token}={following}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


def load_config(spec: str) -> ml_collections.ConfigDict:
    """Runs `FILE.py[:variant]`'s `get_config(variant)`; raises UsageError (one line) for a
    file that is missing, unreadable, not Python, without `get_config`, whose `get_config`
    raises or returns anything but a ConfigDict."""
    path, _, variant = spec.partition(":")
    if not path:
        raise UsageError("--config is empty; pass e.g. --config=configs/coco.py")
    if not os.path.exists(path):
        raise UsageError(f"config file {path!r} not found; pass e.g. --config=configs/coco.py")
    if not os.path.isfile(path):
        raise UsageError(f"config file {path!r} is not a file; pass e.g. --config=configs/coco.py")
    try:
        with open(path, "rb") as f:
            source = f.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as error:
        raise UsageError(f"config file {path!r} cannot be read ({error.strerror})") from None
    if len(source) > MAX_CONFIG_FILE_BYTES:
        raise UsageError(
            f"config file {path!r} is larger than {MAX_CONFIG_FILE_BYTES:,} bytes; a config "
            "file is a short Python file with get_config()"
        )
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as error:  # ValueError: null bytes in the source
        where = f" line {error.lineno}" if getattr(error, "lineno", None) else ""
        detail = getattr(error, "msg", None) or str(error)
        raise UsageError(f"config file {path}{where}: {detail} ({type(error).__name__})") from None
    namespace = {"__name__": "jaxgan_config_file", "__file__": path}
    try:
        exec(code, namespace)  # noqa: S102 (the user's own config file, as ml_collections runs it)
    except Exception as error:  # noqa: BLE001 (anything the file raises is reported in one line)
        raise UsageError(f"config file {path}{_line_in(path, error)}: {_describe(error)}") from None
    get_config = namespace.get("get_config")
    if not callable(get_config):
        raise UsageError(
            f"config file {path} defines no get_config(); a config file defines "
            "get_config(variant='') returning an ml_collections.ConfigDict"
        )
    args = (variant,) if variant else ()
    try:
        inspect.signature(get_config).bind(*args)
    except TypeError:
        raise UsageError(
            f"{path}'s get_config() takes "
            + (f"no variant; drop ':{variant}'" if variant else "a variant; pass FILE.py:VARIANT")
        ) from None
    except ValueError:  # no signature (a builtin): let the call say
        pass
    try:
        config = get_config(*args)
    except ValueError as error:  # our configs' one-line refusals, e.g. an unknown variant
        raise UsageError(str(error)) from None
    except Exception as error:  # noqa: BLE001 (as above)
        raise UsageError(
            f"{path}:get_config({variant!r}) failed{_line_in(path, error)}: {_describe(error)}"
        ) from None
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(
            f"{path}'s get_config() returned {type(config).__name__}, not an "
            "ml_collections.ConfigDict (start from jaxgan.base_config.get_base_config())"
        )
    return config


def _describe(error: BaseException) -> str:
    return (
        f"{type(error).__name__}: {_one_line(error, 200)}" if str(error) else type(error).__name__
    )


def _line_in(path: str, error: BaseException) -> str:
    """' at line N' for the last frame of `error`'s traceback inside `path`, or ''."""
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(error.__traceback__)
        if os.path.abspath(frame.filename) == os.path.abspath(path)
    ]
    return f" at line {lines[-1]}" if lines else ""


def _fields(config, prefix=""):
    for key, value in config.items():
        yield f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict):
            yield from _fields(value, f"{prefix}{key}.")


def _override_field(name: str) -> str | None:
    """'config.a.b' or 'noconfig.a.b' -> 'a.b'; None for other flags."""
    for prefix in ("config.", "noconfig."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def prepare(argv: list[str], value_flags) -> list[str]:
    """Checks the command line `argv` (without the program name) and returns it with every
    value joined to its flag and --config first. Raises UsageError (one line).

    `value_flags`: the names of our flags that take a value."""
    names = [_name(t) for t in argv if _is_flag(t)]
    if any(name in HELP_FLAGS for name in names):
        return argv  # absl prints the help
    argv = _join_values(argv, lambda name: name in value_flags)
    specs = [t.split("=", 1)[1] for t in argv if _is_flag(t) and _name(t) == "config" and "=" in t]
    overrides = [t for t in argv if _is_flag(t) and _override_field(_name(t)) is not None]
    config = load_config(specs[-1]) if specs else None
    if overrides and config is None:
        raise UsageError(
            f"{overrides[0]} overrides a config field, but no --config=FILE.py is given"
        )

    def takes_value(name: str):
        field = _override_field(name)
        if field is None or config is None:
            return False
        value = field_at(config, field)
        if value is MISSING:
            return False  # reported below, once joined
        if name.startswith("no"):  # --noconfig.FIELD sets a boolean to False, takes no value
            return False
        return "optional" if isinstance(value, bool) else True

    argv = _join_values(argv, takes_value)
    for token in argv:
        field = _override_field(_name(token)) if _is_flag(token) else None
        if field is None:
            continue
        value = field_at(config, field)
        if value is MISSING and renamed_message(field):
            raise UsageError(f"{renamed_message(field)} (from {token})")
        if value is MISSING:
            hint = close_match(field, _fields(config))
            raise UsageError(
                f"unknown config field {field!r} (from {token}){hint}; the fields are those of "
                f"{specs[-1].partition(':')[0]} (see jaxgan/base_config.py)"
            )
        if isinstance(value, ml_collections.ConfigDict):
            raise UsageError(
                f"{token}: config.{field} is a section, not a field; set one of its fields, "
                f"e.g. --config.{field}.{next(iter(value.keys()), 'FIELD')}=VALUE"
            )
    # ml_collections refuses overrides placed before --config; they apply after it anyway.
    config_flags = [t for t in argv if _is_flag(t) and _name(t) == "config"]
    rest = [t for t in argv if not (_is_flag(t) and _name(t) == "config")]
    argv = config_flags + rest
    _check_simple_flags(argv, config is not None)
    return argv


def _check_simple_flags(argv: list[str], has_config: bool) -> None:
    """--workdir present, --mode known, --config given for training, no flag of another mode,
    the distributed flags only with --distributed and with values a run can have."""
    values = {}
    for token in argv:
        if _is_flag(token) and "=" in token:
            values[_name(token)] = token.split("=", 1)[1]
    if not values.get("workdir"):
        raise UsageError("--workdir is required: --workdir=DIR (checkpoints and metrics go there)")
    mode = values.get("mode", "train")
    if mode not in MODES:
        raise UsageError(
            f"unknown --mode {mode!r}; choose one of {list(MODES)}{close_match(mode, MODES)}"
        )
    if mode == "train" and not has_config:
        raise UsageError("--mode=train needs --config=configs/FILE.py")
    if mode == "train" and "checkpoint_step" in values:
        raise UsageError(
            "--checkpoint_step is for --mode=eval and --mode=predict; training resumes from the "
            "newest checkpoint that restores: drop --checkpoint_step"
        )
    for name in PREDICT_FLAGS:
        if mode != "predict" and name in values:
            raise UsageError(f"--{name} is for --mode=predict; drop it or add --mode=predict")
    _check_distributed_flags(argv, values)


def _check_distributed_flags(argv: list[str], values: dict) -> None:
    """The process flags only with --distributed, and each value one a run can have."""
    distributed = False
    for token in argv:
        if _is_flag(token) and _name(token) in ("distributed", "nodistributed"):
            value = token.split("=", 1)[1] if "=" in token else "true"
            distributed = (_name(token) == "distributed") == (value.lower() in ("true", "1"))
    given = [name for name in PROCESS_FLAGS if name in values]
    if given and not distributed:
        raise UsageError(
            f"--{given[0]} is for multi-process runs; add --distributed, or drop --{given[0]}"
        )
    number, process = _integer(values, "num_processes"), _integer(values, "process_id")
    if number is not None and number < 1:
        raise UsageError(f"--num_processes={number} must be >= 1")
    if process is not None and process < 0:
        raise UsageError(f"--process_id={process} must be >= 0 (process 0 is the coordinator's)")
    if number is not None and process is not None and process >= number:
        raise UsageError(
            f"--process_id={process} must be < --num_processes={number} (process ids run from 0 "
            f"to {number - 1})"
        )
    timeout = _integer(values, "distributed_timeout")
    if timeout is not None and not 1 <= timeout <= MAX_DISTRIBUTED_TIMEOUT_S:
        raise UsageError(
            f"--distributed_timeout={timeout} must be in [1, {MAX_DISTRIBUTED_TIMEOUT_S}] seconds"
        )
    address = values.get("coordinator_address")
    if address is not None and not is_host_and_port(address):
        raise UsageError(
            f"--coordinator_address={address} is not HOST:PORT with a port in 1..65535; pass "
            "process 0's host and a free port, e.g. --coordinator_address=10.0.0.1:1234 "
            "(an IPv6 host in brackets: [::1]:1234)"
        )


def _integer(values: dict, name: str) -> int | None:
    """An integer flag's value, or None if absent or not an integer (absl then says so)."""
    try:
        return int(values[name])
    except (KeyError, ValueError):
        return None


def is_host_and_port(address: str) -> bool:
    """HOST:PORT, with a port in 1..65535 and an IPv6 host in brackets."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or any(c.isspace() for c in host):
        return False
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]") and len(host) > 2):
            return False
    elif ":" in host:  # an IPv6 address without brackets: which colon is the port's?
        return False
    return port.isascii() and port.isdigit() and 1 <= int(port) <= 65535


@contextlib.contextmanager
def native_stderr_silenced():
    """Sends what native code writes to file descriptor 2 to /dev/null for the block. Importing
    TensorFlow prints C++ log banners that TF_CPP_MIN_LOG_LEVEL does not silence; a mistake's
    one line must not come after them. Python's own errors still reach sys.stderr after."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def absl_error(error: flags.Error) -> str:
    """absl's parsing error as one line; an override's wrong type names the field and type."""
    message = _one_line(error)
    head, _, detail = message.partition(": ")
    if head.startswith("flag --config.") and "=" in head:
        field, _, value = head[len("flag --config.") :].partition("=")
        return f"--config.{field}={value}: a value of the wrong type for config.{field} ({detail})"
    return f"{message}; see --helpshort"


def parse_flags(argv: list[str], value_flags, flag_values=flags.FLAGS) -> list[str]:
    """For absl's `app.run(flags_parser=...)`: `argv` with the program name first; returns
    the positional arguments left. Exits with one line and status 2 on any mistake."""
    try:
        prepared = prepare(list(argv[1:]), value_flags)
    except UsageError as error:
        fail(str(error))
    # ml_collections reads the overrides from sys.argv itself: it must see the prepared form.
    sys.argv[1:] = prepared
    try:
        return flag_values([argv[0], *prepared])
    except flags.Error as error:
        fail(absl_error(error))
