"""The harness reads template.yaml; nothing about the stack is repeated by hand here."""

from __future__ import annotations

import json

from batchpipe.local import template as tpl
from batchpipe.local.stack import LocalStack


def test_every_template_function_runs_in_process_from_its_handler():
    template = tpl.load_template()
    with LocalStack() as stack:
        functions = tpl.resources_of_type(template, "AWS::Serverless::Function")
        assert set(stack.functions.by_logical_id) == set(functions)
        for logical_id in functions:
            handler = tpl.function_properties(template, logical_id)["Handler"]
            assert stack.functions.by_logical_id[logical_id].handler_path == handler
            assert callable(stack.functions.by_logical_id[logical_id].load())


def test_definition_substitutions_point_at_the_stack_functions():
    with LocalStack() as stack:
        described = stack.client("stepfunctions").describe_state_machine(
            stateMachineArn=stack.state_machine_arn
        )
        definition = json.loads(described["definition"])
        resources = {
            state["Parameters"]["FunctionName"]
            for state in definition["States"].values()
            if state.get("Resource", "").startswith("arn:aws:states:::lambda:invoke")
        }
        assert resources <= {f.arn for f in stack.functions.by_name.values()}
        assert "${" not in described["definition"]


def test_function_environment_is_the_templates():
    template = tpl.load_template()
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for logical_id in tpl.resources_of_type(template, "AWS::Serverless::Function"):  # a function's own
        declared |= set(tpl.function_properties(template, logical_id)["Environment"]["Variables"])
    with LocalStack() as stack:
        env = stack.function_environment()
    assert set(env) == declared
    assert env["PIPELINE_BUCKET"] == stack.pipeline_bucket


def test_lambda_error_contract_reaches_step_functions_as_the_exception_name():
    with LocalStack() as stack:
        lam = stack.client("lambda")
        response = lam.invoke(
            FunctionName=stack.ref("ValidateSpecFunction"), Payload=json.dumps({"spec": {}, "execution": {}})
        )
        assert response["FunctionError"] == "Unhandled"
        payload = json.loads(response["Payload"].read())
        assert set(payload) >= {"errorType", "errorMessage", "stackTrace"}


def test_parameter_overrides_are_checked_against_the_template():
    import pytest

    with pytest.raises(tpl.UnresolvableError, match="not one of"):
        LocalStack(parameters={"InventoryFormat": "JSON"})
    with pytest.raises(tpl.UnresolvableError, match="unknown template parameters"):
        LocalStack(parameters={"NoSuchParameter": "x"})
