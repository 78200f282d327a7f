"""
Finding the TODO blocks of a graded file, in any version of the starter.

A TODO block is the code a student writes for one TODO: in the kit's
reference it sits between `### BEGIN SOLUTION` and `### END SOLUTION`; in a
student's file (of this kit, of the course's original starter or of its
errata starter) it is found by the course's own layout:

    ######################################################################
    # TODO: ...                                  <- the TODO banner
    ######################################################################
    x = None                                     <- placeholders the TODO
    # Replace "pass" statement with your code       invites to replace
    ...the student's code...
    ######################################################################
    #                           END OF YOUR CODE                         #

From the `# Replace "pass" statement with your code` marker the block reaches
back over comments, blank lines and placeholders up to the TODO banner or the
last provided line, and forward up to the END banner (or, for the one block
without an END banner, the provided line that follows it), never past a line
indented less than the marker. Markers are matched to the kit's blocks by
enclosing function and order, so helper functions and reordered code
elsewhere do not shift them; where a student deleted markers, the block is
the code between the provided lines around it.
"""
import ast
import re
import textwrap
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

MARKER = re.compile(r"^\s*#\s*replace\s+[\"'`]?pass[\"'`]?\s+statement\s+with\s+your\s+code", re.I)
BANNER = re.compile(r"^\s*#{8,}\s*$")
END_TEXT = re.compile(r"^\s*#+\s*END\s+OF\s+YOUR\s+CODE\s*#*\s*$", re.I)
BEGIN_SOLUTION = re.compile(r"^(\s*)### BEGIN SOLUTION\s*$")
END_SOLUTION = re.compile(r"^\s*### END SOLUTION\s*$")
DEF = re.compile(r"^(\s*)(?:async\s+)?(def|class)\s+(\w+)")
# Lines too plain to tell provided code from a student's (closing brackets, ...).
GENERIC = re.compile(r"^\s*([)\]}([{,:]|None,?|else:|pass)*\s*(#.*)?$")


@dataclass
class KitBlock:
    """One TODO block of the kit's reference file."""

    name: str  # the check that grades it
    qualname: str  # enclosing function, e.g. "RPN.forward"
    index: int  # position among the blocks of that function
    indent: str  # indentation of the BEGIN marker
    begin: int  # 0-based line of `### BEGIN SOLUTION`
    end: int  # 0-based line of `### END SOLUTION`
    # Provided line that ends the block when no END banner follows it.
    post_anchor: Optional[str] = None
    # Last / first provided code line before / after the block, same function.
    before: Optional[str] = None
    after: Optional[str] = None
    # [start, stop) lines that a student's block replaces in the reference.
    region: Tuple[int, int] = (0, 0)


@dataclass
class FoundBlock:
    """A TODO block as found in a student's file (0-based, `stop` excluded)."""

    name: str
    start: int
    stop: int
    indent: int  # columns of the marker (or of the region)
    lines: List[str] = field(default_factory=list)
    how: str = "marker"  # "marker" or "anchors"

    @property
    def empty(self) -> bool:
        return is_empty(self.lines)


def indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def is_code(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def split_lines(text: str) -> List[str]:
    """Lines without endings, tabs expanded, a byte-order mark dropped."""
    if text.startswith("\ufeff"):
        text = text[1:]
    return [line.expandtabs(8).rstrip("\r") for line in text.splitlines()]


def logical_starts(lines: List[str]) -> List[bool]:
    """
    For every line, whether it starts a logical line: not inside a bracket
    or a triple-quoted string left open by an earlier line. A rough scanner
    (strings, comments, brackets) for files that may not parse: a bracket
    left open (a syntax error) is closed by the next line that is indented
    no deeper than the line that opened it and does not start with a closing
    bracket, as continuation lines always are in code that parses.
    """
    starts: List[bool] = []
    depth, quote, opener = 0, None, 0
    for line in lines:
        stripped = line.strip()
        if depth and quote is None and stripped and not stripped.startswith("#") \
                and indent_of(line) <= opener and stripped[0] not in ")]}":
            depth = 0
        starts.append(depth == 0 and quote is None)
        if depth == 0 and quote is None and stripped:
            opener = indent_of(line)
        i = 0
        while i < len(line):
            if quote:
                if line.startswith(quote, i):
                    i += len(quote)
                    quote = None
                    continue
                i += 2 if line[i] == "\\" else 1
                continue
            ch = line[i]
            if ch == "#":
                break
            if line.startswith('"""', i) or line.startswith("\'\'\'", i):
                quote = line[i:i + 3]
                i += 3
                continue
            if ch in "\"'":
                quote = ch
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            i += 1
        if quote in ('"', "'"):
            quote = None  # an unclosed one-line string: a syntax error, ignore it
    return starts


def enclosing_functions(lines: List[str]) -> List[Optional[str]]:
    """
    Qualified name of the innermost `def` / `class` around every line (None at
    module level), from indentation alone: works on files that do not parse.
    """
    out: List[Optional[str]] = []
    stack: List[Tuple[int, str]] = []
    for line, start in zip(lines, logical_starts(lines)):
        if start and is_code(line):
            col = indent_of(line)
            while stack and stack[-1][0] >= col:
                stack.pop()
            m = DEF.match(line)
            if m:
                out.append(".".join(n for _, n in stack) or None)
                stack.append((col, m.group(3)))
                continue
        out.append(".".join(n for _, n in stack) or None)
    return out


def is_empty(lines: List[str]) -> bool:
    """
    True when a block holds nothing but comments, `pass` and the placeholders
    the TODO invites to replace (`x = None`, `a, b = None, None`, ...): the
    TODO is not implemented yet.
    """
    code = "\n".join(lines)
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError:
        return False

    def is_none(node):
        if isinstance(node, ast.Constant) and node.value is None:
            return True
        return isinstance(node, ast.Tuple) and all(is_none(e) for e in node.elts)

    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Assign) and is_none(s.value))
               for s in tree.body)


def kit_blocks(reference_text: str, names: List[str]) -> List[KitBlock]:
    """The kit's TODO blocks, in file order, named by `names` (the checks)."""
    lines = split_lines(reference_text)
    funcs = enclosing_functions(lines)
    blocks: List[KitBlock] = []
    begin = None
    for i, line in enumerate(lines):
        m = BEGIN_SOLUTION.match(line)
        if m:
            begin = (i, m.group(1))
        elif END_SOLUTION.match(line) and begin is not None:
            qual = funcs[begin[0]]
            index = sum(1 for b in blocks if b.qualname == qual)
            blocks.append(KitBlock(names[len(blocks)], qual, index, begin[1], begin[0], i))
            begin = None
    if len(blocks) != len(names):
        raise ValueError(f"expected {len(names)} solution blocks, found {len(blocks)}")
    provided = provided_lines(reference_text)
    provided_text = {q: {s for _, s in v} for q, v in provided.items()}
    for b in blocks:
        nxt = next((s for s in lines[b.end + 1:] if s.strip()), "")
        if not (BANNER.match(nxt) or END_TEXT.match(nxt)):
            b.post_anchor = next(s.strip() for s in lines[b.end + 1:] if is_code(s))
        own = provided.get(b.qualname, [])
        b.before = next((s for i, s in reversed(own) if i < b.begin), None)
        b.after = next((s for i, s in own if i > b.end), None)
        # What a student's block replaces: the solution and the placeholders,
        # comments and marker around it (the same rule as in students' files).
        marker = b.begin - 1 if b.begin and MARKER.match(lines[b.begin - 1]) else b.begin
        region = _block_at_marker(lines, funcs, marker, b, provided_text.get(b.qualname, set()), None)
        b.region = (region.start, max(region.stop, b.end + 1))
    return blocks


def provided_lines(reference_text: str) -> Dict[Optional[str], List[Tuple[int, str]]]:
    """
    {function: [(line, stripped text)]} of the provided code of the kit's
    reference: code lines outside the solution blocks, placeholders excluded.
    """
    lines = split_lines(reference_text)
    funcs = enclosing_functions(lines)
    placeholders = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Assign) and is_empty([ast.unparse(node)]):
            placeholders.update(range(node.lineno - 1, node.end_lineno))
    out: Dict[Optional[str], List[Tuple[int, str]]] = {}
    inside = False
    for i, line in enumerate(lines):
        if BEGIN_SOLUTION.match(line):
            inside = True
            continue
        if END_SOLUTION.match(line):
            inside = False
            continue
        if inside or not is_code(line) or i in placeholders or GENERIC.match(line):
            continue
        out.setdefault(funcs[i], []).append((i, line.strip()))
    return out


def find_blocks(text: str, blocks: List[KitBlock],
                provided: Dict) -> Tuple[Dict[str, Optional[FoundBlock]], List[str]]:
    """
    Locate every kit block in a student's file.

    Args:
        text: the student's file.
        blocks: `kit_blocks(...)` of the same file.
        provided: `provided_lines(...)` of the kit's reference.

    Returns:
        ({check name: FoundBlock or None when it cannot be found}, notes)
    """
    lines = split_lines(text)
    funcs = enclosing_functions(lines)
    provided_text = {q: {s for _, s in v} for q, v in provided.items()}
    notes: List[str] = []
    found: Dict[str, Optional[FoundBlock]] = {}

    markers: Dict[Optional[str], List[int]] = {}
    for i, line in enumerate(lines):
        if MARKER.match(line):
            markers.setdefault(funcs[i], []).append(i)
    by_func: Dict[str, List[KitBlock]] = {}
    for kb in blocks:
        by_func.setdefault(kb.qualname, []).append(kb)
    for qual, kbs in by_func.items():
        own = markers.get(qual, [])
        if len(own) >= len(kbs):
            if len(own) > len(kbs):
                notes.append(f"{qual} has {len(own)} '# Replace \"pass\" statement with your code' "
                             f"lines, expected {len(kbs)}: the first {len(kbs)} were taken as the TODOs")
            lower = None
            for kb, m in zip(kbs, own):
                fb = _block_at_marker(lines, funcs, m, kb, provided_text.get(qual, set()), lower)
                found[kb.name] = fb
                lower = fb.stop
        else:
            taken = -1
            for kb in kbs:
                fb = _block_by_anchors(lines, funcs, kb)
                if fb is not None and fb.start < taken:
                    # Two TODOs between the same provided lines: the code went
                    # to the first of them.
                    fb = FoundBlock(kb.name, taken, taken, fb.indent, [], "anchors")
                found[kb.name] = fb
                taken = fb.stop if fb is not None else taken
            missing = [kb.name for kb in kbs if found[kb.name] is None]
            notes.append(f"{qual}: the '# Replace \"pass\" statement with your code' lines are missing; "
                         "its TODO blocks were taken as the code between the provided lines"
                         + (f" ({', '.join(missing)} not found)" if missing else ""))
    return found, notes


def _block_at_marker(lines, funcs, m, kb, provided, lower) -> FoundBlock:
    col = indent_of(lines[m])
    qual = funcs[m]
    start = m
    i = m - 1
    while i >= 0 and (lower is None or i >= lower) and funcs[i] == qual:
        line = lines[i]
        if BANNER.match(line) or END_TEXT.match(line):
            break
        if is_code(line) and (indent_of(line) < col or line.strip() in provided or DEF.match(line)):
            break
        start = i
        i -= 1
    stop = m + 1
    while stop < len(lines):
        line = lines[stop]
        if BANNER.match(line) or END_TEXT.match(line) or MARKER.match(line):
            break
        if is_code(line):
            if indent_of(line) < col or (kb.post_anchor and line.strip() == kb.post_anchor):
                break
        stop += 1
    # Leading/trailing blank lines are layout, not code.
    while stop > m + 1 and not lines[stop - 1].strip():
        stop -= 1
    while start < m and not lines[start].strip():
        start += 1
    return FoundBlock(kb.name, start, stop, col, lines[start:stop])


def _block_by_anchors(lines, funcs, kb) -> Optional[FoundBlock]:
    """The code between the provided lines around the block (markers deleted)."""
    inside = [i for i, q in enumerate(funcs) if q == kb.qualname]
    if not inside:
        return None
    lo, hi = inside[0], inside[-1] + 1
    if kb.after is not None:
        hits = [i for i in range(lo, hi) if lines[i].strip() == kb.after]
        if not hits:
            return None
        hi = hits[0]
    if kb.before is not None:
        hits = [i for i in range(lo, hi) if lines[i].strip() == kb.before]
        if not hits:
            return None
        lo = hits[-1] + 1
    region = [i for i in range(lo, hi) if lines[i].strip() and not BANNER.match(lines[i])
              and not END_TEXT.match(lines[i])]
    code = [i for i in region if is_code(lines[i])]
    if not code:
        return FoundBlock(kb.name, lo, lo, indent_of(lines[lo]) if lo < len(lines) else 0, [], "anchors")
    start, stop = code[0], code[-1] + 1
    col = min(indent_of(lines[i]) for i in code)
    return FoundBlock(kb.name, start, stop, col, lines[start:stop], "anchors")
