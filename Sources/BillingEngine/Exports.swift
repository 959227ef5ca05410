// Quantity is part of the billing rules’ vocabulary: whoever imports BillingEngine has it.
@_exported import Quantities
