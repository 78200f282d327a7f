"""
Transplanting a submission's TODO blocks into the kit's own provided code.

A student's file may come from this kit, from the course's original starter
or from its errata starter; their provided code differs (the course
concatenates RoI features level-major, builds the backbone without
`pretrained`, ...). Grading the file as it is would charge those differences
to the student. Instead the grader writes a *prepared* file: the kit's
reference file with every solution block replaced by the student's block
(see `blocks.py` for how blocks are found), plus what the student added
outside the blocks:

- top-level imports, functions, classes and statements that are not part of
  a starter are carried over, at the place they had relative to the provided
  code; methods a student added to a provided class go into that class;
- a carried top-level statement that fails when the file is imported (an
  import of a package the course had and the grader lacks, a module of a
  previous assignment, ...) is replaced by a *stand-in*: every name it would
  bind raises, when used, an error that says what failed and where; the rest
  of the file loads, and only the code that uses it fails;
- a block that does not compile is replaced by one that raises that
  SyntaxError, so it costs only its own check;
- the errata starter's `RPN.predict_proposals` block (per-level proposals
  and scores of one image, in dicts) runs inside a small adapter in the kit's
  loop, which keeps each level's `post_nms_topk` best by the block's scores.

`transplant_file` returns the prepared text, a map from its lines to the
student's lines (feedback quotes the student's own line numbers) and what
was done, for the report.
"""
import ast
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .blocks import FoundBlock, find_blocks, indent_of, is_code, kit_blocks, provided_lines, split_lines

INFO_FILE = ".transplant.json"

# Top-level names of the course's starters that the kit does not have: part
# of the provided code, never carried over.
STARTER_ONLY_NAMES = {"reassign_proposals_to_fpn_levels"}

# Provided lines that identify a starter, and what its provided code does
# differently from the kit's (said in the report; it costs nothing).
ERRATA_SIGNS = ("def reassign_proposals_to_fpn_levels(", "scores_per_fpn_level_per_image = {")
COURSE_DIFFERENCES = {
    "two_stage_detector.py": [
        ("roi_feats = self._cat_across_fpn_levels(roi_feats_per_fpn_level, dim=0)",
         "FasterRCNN.forward concatenates RoI features level-major (the kit: image by image, "
         "in the order of the matched GT boxes)"),
        ("proposals_per_fpn_level = reassign_proposals_to_fpn_levels(",
         "FasterRCNN.forward reassigns proposals to FPN levels (the kit mixes GT boxes into the "
         "RPN's levels)"),
    ],
    "common.py": [
        ("_cnn = models.regnet_x_400mf(pretrained=True)",
         "DetectorBackboneWithFPN(out_channels) has no `pretrained` argument and asks "
         "torchvision for `pretrained=True`, which it no longer accepts"),
    ],
}
APPLY_DELTAS_CLONE = "deltas = deltas.clone()"

STAND_IN_HELPER = '''\
# --- added by the grader: stand-ins for top-level code that fails here ---
_KIT_STOOD_IN = []


class _KitStandIn:
    """Stands in for a name whose top-level statement failed when grading."""

    def __init__(self, message):
        object.__setattr__(self, "_kit_message", message)

    def _kit_raise(self, *args, **kwargs):
        raise ImportError(object.__getattribute__(self, "_kit_message"))

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        self._kit_raise()

    __call__ = __getitem__ = __iter__ = __mro_entries__ = _kit_raise


def _kit_stand_in(names, line, text, error):
    what = f"{type(error).__name__}: {error}"
    _KIT_STOOD_IN.append({"line": line, "statement": text, "error": what, "names": list(names)})
    for name in names:
        globals()[name] = _KitStandIn(
            f"`{name}` is not available when grading: line {line} of your {_KIT_FILE} "
            f"(`{text}`) raised {what}. The grader stood in for it so that the rest of the "
            "file loads; this code uses it. Use only packages of the kit's requirements, "
            "or import inside the code that needs it."
        )
# --- end of the grader's stand-ins ---
'''

ERRATA_ADAPTER_HEAD = """\
# The errata starter's TODO fills per-level dicts for one image; the grader
# runs it inside the kit's loop over images (this adapter is the grader's).
_kit_level_logits, _kit_level_deltas = level_obj_logits, level_boxreg_deltas
batch_size = _kit_level_logits.shape[0]
level_obj_logits = _kit_level_logits[_batch_idx]
level_boxreg_deltas = _kit_level_deltas[_batch_idx]
proposals_per_fpn_level_per_image = {level_name: None}
scores_per_fpn_level_per_image = {level_name: None}
"""
ERRATA_ADAPTER_TAIL = """\
level_obj_logits, level_boxreg_deltas = _kit_level_logits, _kit_level_deltas
_kit_order = scores_per_fpn_level_per_image[level_name].argsort(descending=True, stable=True)
level_proposals_per_image.append(
    proposals_per_fpn_level_per_image[level_name][_kit_order[: self.post_nms_topk]]
)
"""


def detect_starter(text: str, file: str) -> str:
    """"kit", "course", "errata" or "unknown": whose provided code `text` has."""
    if "### BEGIN SOLUTION" in text:
        return "kit"
    if file == "two_stage_detector.py":
        if any(sign in text for sign in ERRATA_SIGNS):
            return "errata"
        if "def _cat_per_image(" in text or "self._cat_per_image(" in text:
            return "kit"
        if "def rcnn_match_anchors_to_gt(" in text:
            return "course"
    else:
        if "pretrained: bool = True" in text:
            return "kit"
        if "class DetectorBackboneWithFPN" in text:
            return "course"
    return "unknown"


def provided_differences(text: str, file: str, starter: str) -> List[str]:
    """What the file's provided code does differently from the kit's."""
    out = [why for line, why in COURSE_DIFFERENCES.get(file, []) if line in text]
    if (file == "two_stage_detector.py" and starter in ("course", "errata")
            and "def rcnn_apply_deltas_to_anchors(" in text and APPLY_DELTAS_CLONE not in text):
        out.append("rcnn_apply_deltas_to_anchors clamps the caller's deltas in place "
                   "(the kit clamps a copy)")
    if starter == "errata":
        out.append("RPN.predict_proposals returns one tensor per image for all levels "
                   "(the kit: per level, per image)")
    return out


# ---------------------------------------------------------------- blocks
def reindent(lines: List[str], from_col: int, indent: str) -> List[str]:
    """Move a block from column `from_col` to `indent`."""
    out = []
    for line in lines:
        if not line.strip():
            out.append("")
        elif indent_of(line) >= from_col:
            out.append(indent + line[from_col:])
        else:
            out.append(indent + line.lstrip())
    return out


def block_syntax_error(code_lines: List[str]) -> Optional[SyntaxError]:
    """The SyntaxError of a block on its own (inside a function and a loop,
    so that `return`, `continue` and `break` are fine), or None."""
    body = reindent(code_lines, min((indent_of(l) for l in code_lines if is_code(l)), default=0), "        ")
    src = "def _kit_block():\n    for _kit_ in ():\n" + "\n".join(body)
    try:
        compile(src + "\n        pass\n", "<block>", "exec")
    except SyntaxError as error:
        if error.lineno is not None:
            error.lineno -= 2
        return error
    return None


def syntax_error_block(error: SyntaxError, file: str, student_line: Optional[int], indent: str) -> List[str]:
    where = f"line {student_line}" if student_line else "this TODO"
    msg = f"your TODO block does not compile ({file}, {where}): {error.msg}"
    if error.text:
        msg += f": {error.text.strip()}"
    return [f"{indent}raise SyntaxError({msg!r})"]


# ------------------------------------------------------ outside the blocks
def bound_names(node: ast.stmt) -> List[str]:
    """Names a top-level statement binds."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        out = []
        for alias in node.names:
            if alias.name == "*":
                continue
            out.append(alias.asname or alias.name.split(".")[0])
        return out
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.append(sub.id)
    return sorted(set(names))


def stmt_key(node: ast.stmt):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return ("def", node.name)
    return ("stmt", ast.dump(node))


def node_lines(node) -> Tuple[int, int]:
    """0-based [first, last] lines of a statement, decorators included."""
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return first - 1, node.end_lineno - 1


def describe_stmt(node: ast.stmt, lines: List[str]) -> str:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def {node.name}"
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    first, _ = node_lines(node)
    text = lines[first].strip()
    return text if len(text) <= 80 else text[:77] + "..."


class Prepared:
    """The prepared text of one file, built line by line with origins."""

    def __init__(self):
        self.lines: List[str] = []
        self.origin: List[int] = []  # the student's 1-based line, 0 for kit/grader lines
        self.ranges: Dict[str, List[int]] = {}  # check -> [first, last] 1-based lines

    def add(self, line: str, origin: int = 0):
        self.lines.append(line)
        self.origin.append(origin)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def transplant_file(text: str, file: str, reference_text: str, names: List[str]) -> Tuple[str, dict]:
    """
    The student's `file` (`text`) as the kit's reference file with the
    student's TODO blocks and additions.

    Args:
        text: the student's file.
        file: its name ("two_stage_detector.py" or "common.py").
        reference_text: the kit's reference of that file (solution markers).
        names: the checks of its blocks, in file order.

    Returns:
        (prepared text, info): info has "starter", "blocks" {check: {"status",
        "lines"}}, "carried", "notes", "differences", "lines" (student line of
        every prepared line, 0 for the kit's) and "ranges" {check: [first,
        last] prepared lines of the block, 1-based}.
    """
    kbs = kit_blocks(reference_text, names)
    provided = provided_lines(reference_text)
    student = split_lines(text)
    starter = detect_starter(text, file)
    found, notes = find_blocks(text, kbs, provided)
    info = {"starter": starter, "blocks": {}, "carried": [], "notes": list(notes),
            "differences": provided_differences(text, file, starter)}

    # The student's blocks, re-indented to the kit's, compiled one by one.
    block_code: Dict[str, List[Tuple[str, int]]] = {}
    for kb in kbs:
        fb: Optional[FoundBlock] = found.get(kb.name)
        if fb is None:
            info["blocks"][kb.name] = {"status": "not found"}
            block_code[kb.name] = [(kb.indent + "pass", 0)]
            continue
        # The block's own indentation: that of its code (a comment may be anywhere).
        base = min((indent_of(l) for l in fb.lines if is_code(l)), default=fb.indent)
        code = reindent(fb.lines, base, kb.indent)
        entry = {"status": "not implemented" if fb.empty else "transplanted",
                 "lines": [fb.start + 1, fb.stop] if fb.stop > fb.start else []}
        error = block_syntax_error(fb.lines)
        if error is not None:
            line = fb.start + error.lineno if error.lineno else None
            entry["status"] = "syntax error"
            entry["error"] = f"line {line}: {error.msg}" if line else error.msg
            pairs = [(l, line or 0) for l in syntax_error_block(error, file, line, kb.indent)]
        else:
            pairs = [(l, fb.start + 1 + k) for k, l in enumerate(code)] or [(kb.indent + "pass", 0)]
            if not any(is_code(l) for l, _ in pairs):
                pairs.append((kb.indent + "pass", 0))
            if kb.name == "rpn_predict_proposals" and starter == "errata" and not fb.empty:
                head = [(kb.indent + l if l else "", 0) for l in ERRATA_ADAPTER_HEAD.splitlines()]
                tail = [(kb.indent + l if l else "", 0) for l in ERRATA_ADAPTER_TAIL.splitlines()]
                pairs = head + pairs + tail
                entry["adapter"] = "errata predict_proposals"
        info["blocks"][kb.name] = entry
        block_code[kb.name] = pairs

    carried, class_methods, future, carry_notes = _extras(student, found, kbs, reference_text, file)
    info["notes"] += carry_notes
    for attempt in range(40):
        prepared = _assemble(reference_text, kbs, block_code, carried, class_methods, future, student, file)
        try:
            compile(prepared.text(), file, "exec")
            break
        except SyntaxError as error:
            if not _drop_broken(error, prepared, kbs, block_code, carried, class_methods, info, file):
                info["notes"].append(f"the prepared file does not compile ({error.msg}, line "
                                     f"{error.lineno}); graded as it is")
                return text, dict(info, lines=[], ranges={}, whole_file=True)
    info["carried"] = [c["what"] for c in carried] + [f"{m['cls']}.{m['what']}" for m in class_methods]
    info["lines"] = prepared.origin
    info["ranges"] = dict(prepared.ranges)
    return prepared.text(), info


def _extras(student, found, kbs, reference_text, file):
    """What the student added outside the blocks: (carried top-level
    statements, methods added to provided classes, __future__ imports, notes)."""
    blanked = list(student)
    for fb in found.values():
        if fb is None:
            continue
        for i in range(fb.start, fb.stop):
            blanked[i] = ""
        if fb.stop > fb.start:
            blanked[fb.start] = " " * fb.indent + "pass"
    notes = []
    try:
        tree = ast.parse("\n".join(blanked))
    except SyntaxError as error:
        notes.append(f"{file} has a syntax error outside its TODO blocks (line {error.lineno}: "
                     f"{error.msg}): nothing you wrote outside the TODO blocks was carried over")
        return [], [], [], notes
    kit_tree = ast.parse(reference_text)
    kit_keys = {stmt_key(n): n for n in kit_tree.body}
    kit_classes = {n.name: n for n in kit_tree.body if isinstance(n, ast.ClassDef)}
    carried, methods, future = [], [], []
    anchor = None  # the kit statement the next carried statement follows
    for node in tree.body:
        key = stmt_key(node)
        first, last = node_lines(node)
        if key in kit_keys:
            anchor = kit_keys[key]
            if isinstance(node, ast.ClassDef) and node.name in kit_classes:
                own = {stmt_key(n) for n in kit_classes[node.name].body}
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt_key(sub) not in own:
                        f, l = node_lines(sub)
                        methods.append({"cls": node.name, "what": sub.name, "first": f, "last": l,
                                        "col": indent_of(student[f])})
            continue
        if key[0] == "def" and key[1] in STARTER_ONLY_NAMES:
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring or a bare string
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.append({"first": first, "last": last})
            continue
        guard = not (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list)
        carried.append({"first": first, "last": last, "anchor": anchor, "guard": guard,
                        "names": bound_names(node), "what": describe_stmt(node, student),
                        "text": student[first].strip()[:120]})
    return carried, methods, future, notes


def _assemble(reference_text, kbs, block_code, carried, methods, future, student, file) -> Prepared:
    ref = split_lines(reference_text)
    tree = ast.parse(reference_text)
    imports_end = max((n.end_lineno - 1 for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))),
                      default=-1)
    after: Dict[int, List[dict]] = {}
    for c in carried:
        line = imports_end
        if c["anchor"] is not None:
            line = max(imports_end, node_lines(c["anchor"])[1])
        after.setdefault(line, []).append(c)
    class_end = {}
    for n in tree.body:
        if isinstance(n, ast.ClassDef):
            class_end[n.name] = n.end_lineno - 1
    methods_after: Dict[int, List[dict]] = {}
    for m in methods:
        methods_after.setdefault(class_end[m["cls"]], []).append(m)
    docstring_end = -1
    first = tree.body[0] if tree.body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        docstring_end = tree.body[0].end_lineno - 1
    begins = {kb.region[0]: kb for kb in kbs}

    out = Prepared()
    if docstring_end < 0:
        _emit_future(out, future, student)
    skip_to = -1
    helper_done = False
    for i, line in enumerate(ref):
        if i <= skip_to:
            continue
        if i in begins:
            kb = begins[i]
            first = len(out.lines) + 1
            for text, origin in block_code[kb.name]:
                out.add(text, origin)
            out.ranges[kb.name] = [first, len(out.lines)]
            skip_to = kb.region[1] - 1
            continue
        out.add(line)
        if i == docstring_end:
            _emit_future(out, future, student)
        for m in methods_after.get(i, []):
            out.add("")
            for k, text in enumerate(reindent(student[m["first"]:m["last"] + 1], m["col"], "    ")):
                out.add(text, m["first"] + 1 + k)
        for c in after.get(i, []):
            if c["guard"] and not helper_done:
                out.add("")
                out.add(f"_KIT_FILE = {file!r}")
                for text in STAND_IN_HELPER.splitlines():
                    out.add(text)
                helper_done = True
            _emit_carried(out, c, student)
    return out


def _emit_future(out, future, student):
    for f in future:
        for k in range(f["first"], f["last"] + 1):
            out.add(student[k].strip(), k + 1)


def _emit_carried(out, c, student):
    out.add("")
    body = student[c["first"]:c["last"] + 1]
    if not c["guard"]:
        for k, text in enumerate(body):
            out.add(text, c["first"] + 1 + k)
        return
    out.add("try:")
    for k, text in enumerate(body):
        out.add(("    " + text) if text.strip() else "", c["first"] + 1 + k)
    out.add("except Exception as _kit_error:")
    out.add(f"    _kit_stand_in({tuple(c['names'])!r}, {c['first'] + 1}, {c['text']!r}, _kit_error)")


def _drop_broken(error, prepared, kbs, block_code, carried, methods, info, file) -> bool:
    """Replace what makes the prepared file fail to compile; False if it is
    the kit's own code (then nothing can be done)."""
    line = (error.lineno or 1) - 1
    for name, (first, last) in prepared.ranges.items():
        if first - 1 <= line <= last - 1:
            origin = prepared.origin[line] or None
            indent = next(kb.indent for kb in kbs if kb.name == name)
            block_code[name] = [(l, origin or 0) for l in syntax_error_block(error, file, origin, indent)]
            info["blocks"][name]["status"] = "syntax error"
            info["blocks"][name]["error"] = f"line {origin}: {error.msg}" if origin else error.msg
            return True
    origin = prepared.origin[line] if line < len(prepared.origin) else 0
    if origin:
        for group in (carried, methods):
            for c in list(group):
                if c["first"] + 1 <= origin <= c["last"] + 1:
                    group.remove(c)
                    info["notes"].append(f"line {origin} of {file} does not compile where the grader "
                                         f"puts it ({error.msg}); `{c['what']}` was left out")
                    return True
    return False


# ---------------------------------------------------------------- files
def transplant_files(files: Dict[str, bytes], reference_dir: Path, blocks_of: Dict[str, List[str]]):
    """
    Transplant every graded file of a submission.

    Args:
        files: {file name: the student's bytes}.
        reference_dir: folder with the kit's reference files.
        blocks_of: {file name: check names of its blocks, in order}.

    Returns:
        ({file name: prepared text}, {file name: info}) for the files given.
    """
    texts, infos = {}, {}
    for name, data in files.items():
        text = data.decode("utf-8", errors="replace")
        reference = (Path(reference_dir) / name).read_text()
        try:
            texts[name], infos[name] = transplant_file(text, name, reference, blocks_of[name])
        except Exception as error:  # noqa: BLE001 - a file this module cannot read is graded as it is
            texts[name] = text
            infos[name] = {"starter": detect_starter(text, name), "blocks": {}, "carried": [], "differences": [],
                           "notes": [f"could not be transplanted ({type(error).__name__}: {error}); graded as it is"],
                           "whole_file": True, "lines": [], "ranges": {}}
    return texts, infos


def write_info(dest: Path, infos: Dict[str, dict]):
    (Path(dest) / INFO_FILE).write_text(json.dumps(infos))


def read_info(folder) -> Dict[str, dict]:
    try:
        return json.loads((Path(folder) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}


def summary(infos: Dict[str, dict]) -> Dict[str, dict]:
    """The report's view of `infos`: no line maps."""
    return {name: {k: v for k, v in info.items() if k not in ("lines", "ranges")}
            for name, info in infos.items()}


# ---------------------------------------------------------------- report
STARTER_NAMES = {"kit": "this kit's starter", "course": "the course's original starter",
                 "errata": "the course's errata starter", "unknown": "an unknown starter"}


def annotate_result(result: dict, infos: Dict[str, dict]) -> dict:
    """
    A check's result in the light of what was transplanted: an unfinished
    TODO (the released `pass`) gets one line that says so, a block that was
    not found says why, and notes about the file reach its failing checks.
    """
    info = infos.get(result.get("file")) or {}
    if not info or result.get("status") in ("passed", "missing"):
        return result
    block = (info.get("blocks") or {}).get(result["name"]) or {}
    status = block.get("status")
    lines = block.get("lines") or []
    where = f"{result['file']}, lines {lines[0]}-{lines[1]}" if lines else result["file"]
    result = dict(result)
    if status == "not implemented":
        result["feedback"] = (f"not implemented yet: the TODO block of {result['todo']} ({where}) "
                              "still holds the released `pass`")
        return result
    extra = []
    if status == "not found":
        extra.append(f"note: this TODO's block was not found in {result['file']} (the '# Replace \"pass\" "
                     "statement with your code' line and the provided lines around it were changed); it "
                     "was graded as not implemented")
    extra += [f"note: {n}" for n in info.get("notes", [])]
    if extra:
        result["feedback"] = "\n".join([result.get("feedback", "")] + extra)
    return result


def describe(sub: dict) -> List[str]:
    """Lines for the report of a submission: starter, transplanted blocks,
    carried-over code, stand-ins (nothing for a plain submission of this kit)."""
    out = []
    stood = sub.get("stood_in") or []
    for file, info in sorted((sub.get("transplant") or {}).items()):
        blocks = info.get("blocks") or {}
        counts = {}
        for b in blocks.values():
            counts[b.get("status")] = counts.get(b.get("status"), 0) + 1
        file_stood = [s for s in stood if s.get("file") == file]
        special = (info.get("starter") != "kit" or info.get("carried") or info.get("notes") or file_stood
                   or counts.get("not found") or counts.get("syntax error") or info.get("whole_file"))
        if not special:
            continue
        parts = [f"{file}: {STARTER_NAMES.get(info.get('starter'), info.get('starter'))}"]
        if info.get("whole_file"):
            parts.append("graded as it is (it could not be transplanted)")
        else:
            n = sum(counts.values())
            done = [f"{counts[k]} {k}" for k in ("not implemented", "syntax error", "not found") if counts.get(k)]
            parts.append(f"{n} TODO blocks graded in the kit's provided code"
                         + (f" ({', '.join(done)})" if done else ""))
        if info.get("differences"):
            parts.append(f"provided code differs from the kit's in {len(info['differences'])} place(s), "
                         "which costs nothing")
        if info.get("carried"):
            more = " ..." if len(info["carried"]) > 8 else ""
            parts.append("carried over: " + ", ".join(info["carried"][:8]) + more)
        for s in file_stood[:5]:
            parts.append(f"stood in: line {s.get('line')} `{s.get('statement')}` ({s.get('error')})")
        for n in info.get("notes", [])[:3]:
            parts.append(n)
        out.append("; ".join(parts))
    return out
