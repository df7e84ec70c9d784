"""atts.errors: every user error maps to its exit code in one place, and the modules that
raise them use the same classes (so a caller catching ``atts.config.ConfigError`` still
catches what the guard maps)."""

import pytest

from atts import config, errors
from atts.analysis import grade, llm, report
from atts.engines import sglang as engine_sglang
from atts.method import conformal
from atts.runtime import session, store
from atts.serving import sglang as serving_sglang
from atts.tasks import datasets

EXPECTED = {
    errors.ConfigError: 2, errors.DatasetError: 2, errors.CalibrationError: 2, errors.RunMismatch: 2,
    errors.ReportError: 2, errors.GradeError: 2, errors.LLMConfigError: 2, errors.UserError: 2,
    errors.ServerError: 3, errors.EngineError: 4, engine_sglang.ServerDown: 4, engine_sglang.ContextOverflow: 4,
}


@pytest.mark.parametrize("cls,code", EXPECTED.items(), ids=lambda x: getattr(x, "__name__", str(x)))
def test_guard_maps_each_error_to_its_exit_code(cls, code, capsys):
    exc = cls("draft", "went wrong") if issubclass(cls, errors.EngineError) else cls("went wrong")

    def body():
        raise exc

    assert errors.run_guarded(body) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "went wrong" in err and "Traceback" not in err


def test_interrupt_is_130_and_other_exceptions_propagate(capsys):
    def interrupted():
        raise KeyboardInterrupt

    assert errors.run_guarded(interrupted) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err

    def bug():
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: the traceback shows
        errors.run_guarded(bug)


def test_modules_raise_the_errors_module_classes():
    assert config.ConfigError is errors.ConfigError and datasets.DatasetError is errors.DatasetError
    assert conformal.CalibrationError is errors.CalibrationError and store.RunMismatch is errors.RunMismatch
    assert report.ReportError is errors.ReportError and grade.GradeError is errors.GradeError
    assert llm.LLMConfigError is errors.LLMConfigError and session.UserError is errors.UserError
    assert serving_sglang.ServerError is errors.ServerError and engine_sglang.EngineError is errors.EngineError
    assert issubclass(errors.ConfigError, ValueError)  # still a ValueError for callers that catch one
