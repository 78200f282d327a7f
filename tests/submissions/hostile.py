"""
Hostile submissions: each tries to read, write or reach something outside its
own submission, prints what it tried (`blocked WHAT: Error` or `LEAK WHAT:
...`) and then answers, so that the grade shows whether the sandbox held.

Cases are built on the reference solution with `corpus.rewrite` (a case
replaces TODO blocks, `blocks`, or puts code at the top of a file,
`prepend`); `<<name>>` in their code becomes the Python literal of a `World`
field: markers outside the submission, the listening sockets, the batch
folder. `expect` gives the
score (fraction of the points) of every check that does not get full marks;
`blocked` lists the attempts whose "blocked ..." line must appear in the
feedback of check `shows_in`.
"""
import os
import re
import secrets
import shutil
import socket
import stat
import textwrap
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import corpus

TSD, COMMON = corpus.TSD, corpus.COMMON

# Put at the top of a graded file: report each attempt.
TRY = '''
import os, sys
import os as _os, sys as _sys
def _try(what, fn):
    try:
        value = fn()
    except BaseException as error:  # noqa: BLE001
        print(f"blocked {what}: {type(error).__name__}")
        return None
    print(f"LEAK {what}: {str(value)[:60]!r}")
    return value
'''

# Runs the reference solution's source from `path` (if it can be read).
LOAD = '''
def _run_reference(path, name, *args):
    source = open(path).read()
    namespace = {"__name__": "stolen"}
    exec(compile(source, path, "exec"), namespace)
    return namespace[name](*args)
'''

# A correct nms that the grader accepts (written in PyTorch).
NMS = textwrap.dedent(corpus.DIFFERENT_BUT_CORRECT["blocks"]["nms"])

CASES: List[dict] = [
    # ------------------------------------------------------------ links
    dict(name="symlink_tsd", about="two_stage_detector.py is a symbolic link to the kit's reference",
         link={"two_stage_detector.py": "<<kit>>/two_stage_detector.py"},
         expect={n: 0 for n in TSD}, feedback={"iou": "symbolic link"}),
    dict(name="symlink_tsd_zip", about="a zip whose two_stage_detector.py entry is a symbolic link",
         zip_link={"two_stage_detector.py": "<<kit>>/two_stage_detector.py"},
         expect={n: 0 for n in TSD}, feedback={"iou": "symbolic link"}),
    dict(name="hardlink_outside", about="two_stage_detector.py is a hard link to a file outside",
         hardlink={"two_stage_detector.py": "<<outside>>/reference_two_stage_detector.py"},
         expect={n: 0 for n in TSD}, feedback={"iou": "hard link"}),
    dict(name="symlink_upload", about="the upload itself is a symbolic link to the kit",
         upload_link="<<kit>>",
         expect={n: 0 for n in TSD + COMMON}, feedback={"iou": "symbolic link"}),
    dict(name="symlink_folder", about="the graded files sit in a folder that links to the kit",
         folder_link={"work": "<<kit>>"},
         expect={n: 0 for n in TSD + COMMON}, feedback={"iou": "missing"}),
    # --------------------------------------------- the reference's source
    dict(name="reference_via_sys_modules", about="iou runs the reference found through sys.modules",
         prepend={"two_stage_detector.py": TRY + LOAD},
         blocks={"iou": """
             paths = sorted({m.__file__ for n, m in list(sys.modules.items())
                             if getattr(m, "__file__", None) and n != "two_stage_detector"
                             and m.__file__.endswith("two_stage_detector.py")})
             iou = _try("reference via sys.modules",
                        lambda: _run_reference(paths[0], "iou", boxes1, boxes2))
             """},
         expect={"iou": 0}, blocked={"iou": ["reference via sys.modules"]}),
    dict(name="reference_via_linecache", about="iou runs the reference's lines from linecache",
         prepend={"two_stage_detector.py": TRY},
         blocks={"iou": """
             import linecache
             def _lines():
                 own = os.path.realpath("two_stage_detector.py")
                 for name, module in list(sys.modules.items()):
                     path = getattr(module, "__file__", None) or ""
                     if path.endswith("two_stage_detector.py") and os.path.realpath(path) != own:
                         lines = linecache.getlines(path, vars(module))
                         if lines:
                             return path, "".join(lines)
                 for path in list(linecache.cache):
                     if path.endswith("two_stage_detector.py") and os.path.realpath(path) != own:
                         return path, "".join(linecache.getlines(path))
                 raise LookupError("no reference lines")
             def _run():
                 path, text = _lines()
                 namespace = {"__name__": "stolen"}
                 exec(compile(text, path, "exec"), namespace)
                 return namespace["iou"](boxes1, boxes2)
             iou = _try("reference via linecache", _run)
             """},
         expect={"iou": 0}, blocked={"iou": ["reference via linecache"]}),
    dict(name="reference_via_walk", about="iou walks the file system for the reference and runs it",
         prepend={"two_stage_detector.py": TRY + LOAD},
         blocks={"iou": """
             def _find():
                 own = os.path.realpath("two_stage_detector.py")
                 tops = [os.getcwd(), os.path.dirname(os.getcwd()), "/", os.path.expanduser("~")]
                 package = sys.modules.get("autograder")
                 if package is not None:
                     tops.insert(0, os.path.dirname(os.path.dirname(package.__file__)))
                 seen = 0
                 for top in tops:
                     for folder, dirs, files in os.walk(top):
                         seen += 1
                         dirs[:] = [d for d in dirs if d not in (".venv", "proc", "sys", "usr", ".git")]
                         if folder.count("/") - top.count("/") >= 3 or seen > 3000:
                             dirs[:] = []
                         path = os.path.join(folder, "two_stage_detector.py")
                         if "two_stage_detector.py" in files and os.path.realpath(path) != own:
                             return path
                 raise LookupError("nothing found")
             iou = _try("reference via a file walk", lambda: _run_reference(_find(), "iou", boxes1, boxes2))
             """},
         expect={"iou": 0}, blocked={"iou": ["reference via a file walk"]}),
    dict(name="fixtures_via_module", about="iou reads the reference outputs through the grader's module",
         prepend={"two_stage_detector.py": TRY},
         blocks={"iou": """
             import pathlib
             folder = pathlib.Path(sys.modules["autograder.fixtures"].FIXTURE_DIR)
             stolen = _try("fixtures", lambda: torch.load(folder / "expected.pt", weights_only=True)["iou"])
             _try("fixtures listing", lambda: os.listdir(folder))
             iou = None
             """},
         expect={"iou": 0}, blocked={"iou": ["fixtures", "fixtures listing"]}),
    # ------------------------------------------------- markers outside
    dict(name="read_outside", about="nms reads marker files outside its submission, then answers right",
         prepend={"common.py": TRY},
         blocks={"nms": textwrap.dedent("""
             _try("outside marker", lambda: open(<<outside_marker>>).read())
             _try("home marker", lambda: open(<<home_marker>>).read())
             _try("kit checkout", lambda: open(os.path.join(<<kit>>, "README.md")).read())
             _try("other upload", lambda: open(<<other_upload>>).read())
             _try("other prepared copies", lambda: [n for n in os.listdir(os.path.dirname(os.getcwd()))
                                                    if n != os.path.basename(os.getcwd())][0])
             _try("prepared copy s0", lambda: open(os.path.join(os.path.dirname(os.getcwd()), "s0",
                                                               "two_stage_detector.py")).read())
             _try("worker's environment", lambda: open(f"/proc/{os.getppid()}/environ").read())
             _try("worker's memory", lambda: open(f"/proc/{os.getppid()}/mem", "rb").read(1))
             """) + NMS},
         expect={}, blocked={"nms": ["outside marker", "home marker", "kit checkout", "other upload",
                                     "other prepared copies", "prepared copy s0", "worker's environment",
                                     "worker's memory"]}),
    dict(name="signal_worker", about="nms signals and traces the worker, then answers right",
         prepend={"common.py": TRY},
         blocks={"nms": textwrap.dedent("""
             import ctypes
             def _trace():
                 libc = ctypes.CDLL(None, use_errno=True)
                 if libc.ptrace(0x4206, os.getppid(), 0, 0) != 0:  # PTRACE_SEIZE: does not stop it
                     raise PermissionError(ctypes.get_errno(), "ptrace")
                 return "attached"
             _try("signal the worker", lambda: os.kill(os.getppid(), 0))
             _try("trace the worker", _trace)
             """) + NMS},
         expect={}, blocked={"nms": ["signal the worker", "trace the worker"]}),
    dict(name="write_everywhere", about="every check writes into other submissions' copies and markers",
         prepend={"common.py": TRY + """
def _spray():
    cwd = _os.getcwd()
    mine = open(_os.path.join(cwd, "two_stage_detector.py")).read()
    up = _os.path.dirname(cwd)
    def write(path, text):
        with open(path, "w") as f:
            f.write(text)
        return path
    def others():
        found = [n for n in _os.listdir(up) if n != _os.path.basename(cwd)]
        if not found:
            raise LookupError("only its own copy")
        return found
    names = _try("list other copies", others) or []
    for name in sorted(set(names) | {f"s{i}" for i in range(64)}):
        if _os.path.join(up, name) != cwd:
            try:
                write(_os.path.join(up, name, "two_stage_detector.py"), mine)
                print(f"LEAK wrote {name}")
            except OSError:
                pass
    for where, folder in (("own copy", cwd), ("copies folder", up), ("kit", <<kit>>),
                          ("fixtures", <<fixtures>>), ("home", <<home>>), ("tmp", "/tmp"),
                          ("outside", <<outside>>), ("uploads", <<batch>>),
                          ("victim upload", _os.path.join(<<batch>>, <<victim>>))):
        _try(f"write {where}", lambda: write(_os.path.join(folder, <<hacked>>), "hacked"))
    _try("write victim upload file", lambda: write(_os.path.join(<<batch>>, <<victim>>,
                                                                 "two_stage_detector.py"), mine))
_spray()
"""},
         expect={}, blocked={"nms": ["list other copies", "write own copy", "write copies folder", "write kit",
                                     "write fixtures", "write home", "write tmp", "write outside",
                                     "write uploads", "write victim upload", "write victim upload file"]}),
    # ---------------------------------------------------------- network
    dict(name="connect_socket", about="iou connects to local sockets, then answers right",
         prepend={"two_stage_detector.py": TRY},
         blocks={"iou": textwrap.dedent("""
             import socket
             _try("tcp connect", lambda: socket.create_connection(("127.0.0.1", <<tcp_port>>), timeout=2))
             _try("tcp bind", lambda: socket.socket().bind(("127.0.0.1", 0)))
             _try("udp send", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
                 b"x", ("127.0.0.1", <<udp_port>>)))
             _try("unix connect", lambda: socket.socket(socket.AF_UNIX).connect(<<unix_path>>))
             _try("abstract unix connect", lambda: socket.socket(socket.AF_UNIX).connect(<<abstract>>))
             """) + corpus.CORRECT_IOU},
         expect={}, blocked={"iou": ["tcp connect", "tcp bind", "udp send", "unix connect",
                                     "abstract unix connect"]}),
    # -------------------------------------------------------- processes
    dict(name="fork_bomb", about="iou forks until it cannot (at most 1000), then answers right",
         blocks={"iou": textwrap.dedent("""
             import ctypes, time
             forked = 0
             for _ in range(1000):
                 try:
                     pid = os.fork()
                 except OSError:
                     break
                 if pid == 0:
                     ctypes.CDLL(None).prctl(15, b"agbomb", 0, 0, 0)  # PR_SET_NAME
                     time.sleep(60)
                     os._exit(0)
                 forked += 1
             print(f"forked {forked}")
             """) + corpus.CORRECT_IOU},
         prepend={"two_stage_detector.py": "import os\n"},
         expect={}, forks="iou"),
]
VICTIM = "zz_victim"  # graded after `write_everywhere`: the untouched release


@dataclass
class World:
    """Everything outside the submissions that a case may aim at."""

    base: Path
    kit: Path
    fixtures: Path
    home: Path
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    tcp_port: int = 0
    udp_port: int = 0
    hits: Dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        self.outside = self.base / "outside"
        self.batch = self.base / "uploads"
        self.unix_path = str(self.base / "listen.sock")
        self.abstract = "\0autograder-hostile-" + self.token
        self.hacked = f"HACKED-{self.token}"
        self._stop = threading.Event()
        self._socks = []

    @property
    def outside_marker(self) -> Path:
        return self.outside / "marker.txt"

    @property
    def home_marker(self) -> Path:
        return self.home / "marker.txt"

    def fields(self) -> dict:
        return dict(kit=str(self.kit), fixtures=str(self.fixtures), home=str(self.home),
                    outside=str(self.outside), outside_marker=str(self.outside_marker),
                    home_marker=str(self.home_marker), batch=str(self.batch), victim=VICTIM,
                    other_upload=str(self.batch / VICTIM / "common.py"), hacked=self.hacked,
                    tcp_port=self.tcp_port, udp_port=self.udp_port, unix_path=self.unix_path,
                    abstract=self.abstract)

    def write_markers(self):
        for folder in (self.outside, self.home):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o755)
        for marker in (self.outside_marker, self.home_marker):
            marker.write_text(f"marker {self.token}\n")
            os.chmod(marker, 0o644)  # readable by every user: only confinement can hide it
        shutil.copy(self.kit / "two_stage_detector.py", self.outside / "reference_two_stage_detector.py")

    def hacked_files(self) -> List[Path]:
        """Files the write attempts left anywhere they aimed at (in any
        uploads folder of this world)."""
        places = [self.kit, self.fixtures, self.home, Path("/tmp"), self.outside]
        places += [p for p in self.base.glob("uploads*")] + [p / VICTIM for p in self.base.glob("uploads*")]
        return [p / self.hacked for p in places if (p / self.hacked).exists()]

    # ------------------------------------------------------------- sockets
    def listen(self):
        """TCP, UDP, UNIX and abstract UNIX listeners that count what reaches them."""
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(16)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        self.tcp_port, self.udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)  # any uid may connect: only confinement stops it
        unix.listen(16)
        abstract = socket.socket(socket.AF_UNIX)
        abstract.bind(self.abstract)
        abstract.listen(16)
        self._socks = [("tcp", tcp), ("udp", udp), ("unix", unix), ("abstract", abstract)]
        self.hits = {name: 0 for name, _ in self._socks}
        for name, sock in self._socks:
            sock.settimeout(0.2)
            threading.Thread(target=self._serve, args=(name, sock), daemon=True).start()

    def _serve(self, name, sock):
        while not self._stop.is_set():
            try:
                if name == "udp":
                    sock.recvfrom(64)
                else:
                    sock.accept()[0].close()
                self.hits[name] += 1
            except (socket.timeout, OSError):
                continue

    def close(self):
        self._stop.set()
        for _, sock in self._socks:
            sock.close()


def fill(text: str, fields: dict, literal: bool = True) -> str:
    """Replace each `<<name>>` by `fields[name]` (as a Python literal)."""
    return re.sub(r"<<(\w+)>>", lambda m: repr(fields[m.group(1)]) if literal else str(fields[m.group(1)]), text)


def build(case: dict, world: World, reference_dir: Path, out: Path) -> Path:
    """Write the submission of `case` to `out` (a folder, a link, or `out`.zip)."""
    fields = world.fields()

    def fmt(text):
        return fill(text, fields)

    def target(text):
        return fill(text, fields, literal=False)

    spec = dict(case, blocks={k: fmt(v) for k, v in case.get("blocks", {}).items()},
                prepend={k: fmt(v) for k, v in case.get("prepend", {}).items()})
    if "zip_link" in case:
        tmp = out.with_name(out.name + ".files")
        corpus.build(spec, reference_dir, tmp)
        zpath = out.with_suffix(".zip")
        with zipfile.ZipFile(zpath, "w") as zf:
            for name in corpus.BLOCK_ORDER:
                if name in case["zip_link"]:
                    info = zipfile.ZipInfo(f"a4/{name}")
                    info.create_system = 3
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, target(case["zip_link"][name]))
                else:
                    zf.write(tmp / name, f"a4/{name}")
        shutil.rmtree(tmp)
        return zpath
    if "upload_link" in case:
        os.symlink(target(case["upload_link"]), out)
        return out
    if "folder_link" in case:
        out.mkdir(parents=True)
        for name, dest in case["folder_link"].items():
            os.symlink(target(dest), out / name)
        return out
    corpus.build(spec, reference_dir, out)
    for name, dest in case.get("link", {}).items():
        (out / name).unlink()
        os.symlink(target(dest), out / name)
    for name, dest in case.get("hardlink", {}).items():
        (out / name).unlink()
        os.link(target(dest), out / name)
    return out
