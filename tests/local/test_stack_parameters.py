"""The local stack takes only parameters template.yaml accepts, as CloudFormation does.

CloudFormation refuses a deploy whose parameter breaks its MinValue, MaxValue, AllowedValues or
AllowedPattern (CloudFormation user guide, "Parameters"). LocalStack refuses it too, in one line
naming the parameter; tests compress time with ``timeout_scale`` instead of an out-of-range wait.
"""

from __future__ import annotations

import pytest

from batchpipe.local.stack import LocalStack, seconds_per_long_wait
from batchpipe.local.template import ParameterError, load_template
from batchpipe.local.world import World

PARAMETERS = load_template()["Parameters"]


def _refusal(name: str, value: str) -> str:
    with pytest.raises(ParameterError) as refused:
        LocalStack(parameters=World().parameters(**{name: value}))
    return str(refused.value)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "JobWaitTimeoutSeconds",
            "1",
            f"1 is below its MinValue {PARAMETERS['JobWaitTimeoutSeconds']['MinValue']}",
        ),
        (
            "JobCountWaitSeconds",
            str(PARAMETERS["JobCountWaitSeconds"]["MaxValue"] + 1),
            f"is above its MaxValue {PARAMETERS['JobCountWaitSeconds']['MaxValue']}",
        ),
        ("MaxAttempts", "three", "'three' is not a number"),
        ("RetentionDays", "3", "'3' is not one of 7, 14"),
        (
            "InventoryBucket",
            "Not_A_Bucket",
            f"is not {PARAMETERS['InventoryBucket']['ConstraintDescription']}",
        ),
        (
            "InventoryPrefix",
            "/inventory/",
            "'/inventory/' is not a key prefix without leading or trailing slash",
        ),
    ],
)
def test_a_parameter_the_template_refuses_is_refused_in_one_line_naming_it(name, value, says):
    message = _refusal(name, value)
    assert message.startswith(f"parameter {name}: ")
    assert says in message
    assert "\n" not in message


def test_every_default_and_the_local_worlds_parameters_are_accepted():
    stack = LocalStack(parameters=World().parameters())
    assert stack.parameter_values["JobWaitTimeoutSeconds"] == str(
        PARAMETERS["JobWaitTimeoutSeconds"]["Default"]
    )


def test_a_long_wait_compressed_to_a_second_is_a_scale_not_a_parameter():
    assert seconds_per_long_wait(1.0) * int(PARAMETERS["JobWaitTimeoutSeconds"]["Default"]) == pytest.approx(
        1.0
    )
    with pytest.raises(ValueError, match="timeout_scale must be above 0"), LocalStack(timeout_scale=0):
        pass
