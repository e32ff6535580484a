"""The one error evaluation raises for inputs a user can fix."""
from ..errors import UserError


class EvaluationError(UserError):
    """The store or the evaluation config cannot be evaluated; the message says what to do."""
