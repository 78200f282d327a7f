"""
Code the notebooks' self-checks and the grader share: one comparison rule
(`kit.checking`) and one list of the TODOs (`kit.todos`).
"""
