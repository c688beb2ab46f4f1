"""The state machine definition and the template agree with each other and with the contract operators and tests rely on.

Placeholders and substitutions match both ways, every Lambda task invokes a function of this stack,
every transition lands on a state and every state can be reached, and the names operators and tests
rely on (docs/ARCHITECTURE.md: state names and logical IDs) exist with their roles.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

# Integration ARNs are written arn:${Partition}:states:::... (the stack's partition); what follows
# ":::" names the integration.
LAMBDA_INTEGRATION = "lambda:invoke"
# A whole-value placeholder, optionally with a version or alias qualifier.
WHOLE_PLACEHOLDER = re.compile(r"^\$\{(\w+)\}(?::[\w$-]+)?$")

# The contract: logical ID -> the resource types that can play its role.
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
CONTRACT_LOGICAL_IDS: dict[str, tuple[str, ...]] = {
    "PipelineStateMachine": ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"),
    "ValidateSpecFunction": FUNCTION_TYPES,
    "BuildManifestFunction": FUNCTION_TYPES,
    "CreateJobFunction": FUNCTION_TYPES,
    "JobStatusFunction": FUNCTION_TYPES,
    "CheckJobFunction": FUNCTION_TYPES,
    "ProcessReportFunction": FUNCTION_TYPES,
    "SummarizeFunction": FUNCTION_TYPES,
    "BatchOperationsRole": ("AWS::IAM::Role",),
    "PipelineBucket": ("AWS::S3::Bucket",),
    "TokenTable": ("AWS::DynamoDB::Table",),
    "InventoryTable": ("AWS::Glue::Table",),
    "NotificationTopic": ("AWS::SNS::Topic",),
}

# The contract: state -> the function it invokes (operators find one from the other).
CONTRACT_TASKS = {
    "ValidateSpec": "ValidateSpecFunction",
    "CreateJobAndWait": "CreateJobFunction",
    "ProcessReport": "ProcessReportFunction",
    "Summarize": "SummarizeFunction",
}


# ------------------------------------------------------------------ definition walking


def iter_scopes(definition: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (path, {StartAt, States}) for the machine and every Map/Parallel branch inside it.

    Transitions only reach states of their own scope, so each scope is checked on its own.
    """
    yield path, definition
    for name, state in definition.get("States", {}).items():
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from iter_scopes(state[key], f"{path}{name}.{key}.")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from iter_scopes(branch, f"{path}{name}.Branches[{index}].")


def iter_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, scope in iter_scopes(definition):
        for name, state in scope.get("States", {}).items():
            yield f"{path}{name}", state


def transitions(state: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, target state) for every way out of a state."""
    if "Next" in state:
        yield "Next", state["Next"]
    if "Default" in state:
        yield "Default", state["Default"]
    for index, choice in enumerate(state.get("Choices", [])):
        if "Next" in choice:
            yield f"Choices[{index}].Next", choice["Next"]
    for index, catcher in enumerate(state.get("Catch", [])):
        yield f"Catch[{index}].Next", catcher["Next"]


def reachable(states: dict[str, Any], starts: Iterable[str], stop: frozenset[str] = frozenset()) -> set[str]:
    """States reachable from `starts` (included); states in `stop` are reached but not gone through."""
    seen: set[str] = set()
    queue = deque(starts)
    while queue:
        name = queue.popleft()
        if name in seen or name not in states:
            continue
        seen.add(name)
        if name not in stop:
            queue.extend(target for _, target in transitions(states[name]))
    return seen


def invoked_placeholder(state: dict[str, Any]) -> str | None:
    """The `${...}` a Lambda Task invokes, '' for a Lambda Task without one, None for other states."""
    if state.get("Type") != "Task":
        return None
    resource = state.get("Resource", "")
    if match := WHOLE_PLACEHOLDER.match(resource):
        return match.group(1)
    if not resource.partition(":::")[2].startswith(LAMBDA_INTEGRATION):
        return None
    arguments = state.get("Parameters") or state.get("Arguments") or {}
    match = WHOLE_PLACEHOLDER.match(str(arguments.get("FunctionName", "")))
    return match.group(1) if match else ""


def substituted_function(node: Any) -> str | None:
    """The logical ID that a substitution's `!GetAtt X.Arn` or `!Ref X` names."""
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        logical_id, attribute = target.split(".", 1) if isinstance(target, str) else target
        return logical_id if attribute == "Arn" else None
    if isinstance(node, dict) and "Ref" in node:
        return node["Ref"]
    return None


# ------------------------------------------------------------------ placeholders


def test_every_placeholder_has_a_substitution(asl_placeholders: set[str], substitutions: dict) -> None:
    assert sorted(asl_placeholders - substitutions.keys()) == []


def test_every_substitution_is_used(asl_placeholders: set[str], substitutions: dict) -> None:
    assert sorted(substitutions.keys() - asl_placeholders) == []


def test_lambda_tasks_invoke_functions_of_this_stack(
    asl: dict, substitutions: dict, lambda_functions: dict
) -> None:
    problems = []
    lambda_tasks = 0
    for name, state in iter_states(asl):
        placeholder = invoked_placeholder(state)
        if placeholder is None:
            continue
        lambda_tasks += 1
        if not placeholder:
            problems.append(f"{name}: FunctionName is not a ${{...}} placeholder")
        elif placeholder not in substitutions:
            problems.append(f"{name}: ${{{placeholder}}} has no substitution")
        elif substituted_function(substitutions[placeholder]) not in lambda_functions:
            problems.append(
                f"{name}: ${{{placeholder}}} = {substitutions[placeholder]} is not a function's Arn/Ref"
            )
    assert lambda_tasks, "no Lambda Task states found"
    assert problems == []


# ------------------------------------------------------------------ transitions


def test_every_transition_lands_on_a_state(asl: dict) -> None:
    dangling = []
    for path, scope in iter_scopes(asl):
        states = scope.get("States", {})
        if scope.get("StartAt") not in states:
            dangling.append(f"{path}StartAt -> {scope.get('StartAt')}")
        for name, state in states.items():
            dangling += [
                f"{path}{name}.{field} -> {target}"
                for field, target in transitions(state)
                if target not in states
            ]
    assert dangling == []


def test_every_state_is_reachable_from_start_at(asl: dict) -> None:
    unreachable = []
    for path, scope in iter_scopes(asl):
        states = scope.get("States", {})
        seen = reachable(states, [scope.get("StartAt")])
        unreachable += [f"{path}{name}" for name in states if name not in seen]
    assert unreachable == []


# ------------------------------------------------------------------ contract: state names


@pytest.mark.parametrize(("state_name", "function_id"), sorted(CONTRACT_TASKS.items()))
def test_contract_task_invokes_its_function(
    asl: dict, substitutions: dict, state_name: str, function_id: str
) -> None:
    states = asl["States"]
    assert state_name in states, (
        f"the contract (docs/ARCHITECTURE.md) requires a top-level state {state_name!r}"
    )
    placeholder = invoked_placeholder(states[state_name])
    assert placeholder, f"{state_name} must be a Lambda Task"
    assert substituted_function(substitutions.get(placeholder)) == function_id


def test_integration_arns_are_in_the_stacks_partition(asl: dict) -> None:
    literal = sorted(
        name
        for name, state in iter_states(asl)
        if state.get("Type") == "Task" and state.get("Resource", "").startswith("arn:aws:")
    )
    assert literal == [], "write arn:${Partition}:states:::... so GovCloud and China deployments work"


def test_validate_spec_is_the_first_state(asl: dict) -> None:
    # A bad spec must fail the execution at its first state (README, "Job spec reference").
    assert asl["StartAt"] == "ValidateSpec"


def test_create_job_and_wait_waits_for_a_task_token_with_a_timeout(asl: dict) -> None:
    state = asl["States"]["CreateJobAndWait"]
    assert state["Resource"].endswith(".waitForTaskToken")
    assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, "a lost event must not hang a run"
    # CreateJobAndWait -> ProcessReport; in between, the Choice that sends a job S3 has just counted
    # to ConfirmJob (and back), then the report's fan-out, which only leads on to ProcessReport.
    states = asl["States"]
    choice = states[state["Next"]]
    assert choice["Type"] == "Choice" and choice["Default"] == "PlanReport"
    # After ConfirmJob the job runs (back to CreateJobAndWait), except a source.bucket dry run, whose
    # job ConfirmJob cancelled: that run ends with its count (Summarize), never at the report stage.
    after_confirm = states[choice["Choices"][0]["Next"]]["Next"]
    if after_confirm != "CreateJobAndWait":
        dry_run_choice = states[after_confirm]
        assert dry_run_choice["Type"] == "Choice" and dry_run_choice["Default"] == "CreateJobAndWait"
        ends = reachable(
            states, [c["Next"] for c in dry_run_choice["Choices"]], stop=frozenset({"Summarize"})
        )
        assert "Summarize" in ends and not ends & {"CreateJobAndWait", "PlanReport", "ProcessReport"}
    fan_out = reachable(states, ["PlanReport"], stop=frozenset({"ProcessReport", "Summarize"}))
    assert fan_out == {
        "PlanReport",
        "ReadReportParts",
        "JoinNeeded?",
        "RegroupPartitions",
        "JoinPartitions",
        "PackParts",
        "PartsPacked?",
        "ProcessReport",
        "Summarize",
    }


def test_a_wait_timeout_either_waits_again_or_continues(asl: dict) -> None:
    states = asl["States"]
    on_timeout = [
        catcher["Next"]
        for catcher in states["CreateJobAndWait"].get("Catch", [])
        if "States.Timeout" in catcher["ErrorEquals"]
    ]
    assert on_timeout, "CreateJobAndWait must catch States.Timeout (the DescribeJob fallback)"
    after = reachable(states, on_timeout, stop=frozenset({"CreateJobAndWait", "ProcessReport", "Summarize"}))
    assert {"CreateJobAndWait", "ProcessReport"} <= after


def test_process_report_leads_to_more_to_retry_choice(asl: dict) -> None:
    states = asl["States"]
    assert states["ProcessReport"].get("Next") == "MoreToRetry?"
    assert states["MoreToRetry?"]["Type"] == "Choice"


def test_more_to_retry_loops_back_after_a_backoff_or_summarizes(asl: dict) -> None:
    states = asl["States"]
    targets = [target for _, target in transitions(states["MoreToRetry?"])]
    stop = frozenset({"CreateJobAndWait", "Summarize"})
    loops = [
        reachable(states, [t], stop) for t in targets if "CreateJobAndWait" in reachable(states, [t], stop)
    ]
    assert loops, "MoreToRetry? must lead back to CreateJobAndWait"
    for loop in loops:
        assert any(states[name]["Type"] == "Wait" for name in loop - stop), "the rerun needs a backoff Wait"
    assert any("Summarize" in reachable(states, [t], stop) for t in targets)


def test_summarize_ends_the_run(asl: dict) -> None:
    assert asl["States"]["Summarize"].get("End") is True


# ------------------------------------------------------------------ contract: logical IDs


@pytest.mark.parametrize("logical_id", sorted(CONTRACT_LOGICAL_IDS))
def test_brief_logical_id_exists(resources: dict, logical_id: str) -> None:
    assert logical_id in resources, f"the contract (docs/ARCHITECTURE.md) requires {logical_id}"
    assert resources[logical_id]["Type"] in CONTRACT_LOGICAL_IDS[logical_id]


def test_state_machine_definition_is_the_shipped_file(state_machine_properties: dict) -> None:
    assert state_machine_properties["DefinitionUri"] == "statemachine/pipeline.asl.json"


def test_job_status_function_is_the_target_of_job_status_events(resources: dict) -> None:
    events = resources["JobStatusFunction"]["Properties"].get("Events", {})
    patterns = [e["Properties"]["Pattern"] for e in events.values() if e["Type"] == "EventBridgeRule"]
    assert any(p.get("detail", {}).get("eventName") == ["JobStatusChanged"] for p in patterns)


def test_batch_operations_role_is_assumed_by_s3_batch_operations(resources: dict) -> None:
    trust = resources["BatchOperationsRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    principals = [s.get("Principal", {}).get("Service") for s in trust if s["Effect"] == "Allow"]
    assert "batchoperations.s3.amazonaws.com" in principals
