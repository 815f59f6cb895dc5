"""`facilitair eval`: does a workflow beat one model? Arms answer HumanEval-style problems,
and each answer is scored on the problem's hidden tests in the sandbox."""
