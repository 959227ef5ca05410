import UsageEvents

/// The OpenAPI 3.1 document of the Billing API and the ingest API, served at
/// `GET /openapi.json`. `OpenAPIDocumentTests` checks that it names exactly the routes the
/// two servers register, and `ops/contract/contract_test.sh` validates it and runs
/// schemathesis against the live Billing API, so it stays true.
///
/// What every operation repeats is written once, below: an operation of the usual shape on
/// one line (`operation`), a JSON response of a component schema (`response`), one without
/// a body (`empty`), the error responses by status (`errors`: 400 `BadRequest`, 401
/// `Unauthorized`, 403 `Forbidden`, 404 `NotFound`, any other `Error`), shared parameters
/// (`parameters`), a JSON request body (`body`) and a page of a list (`page`); the
/// document interpolates them (`\#(…)`), so what is served is plain OpenAPI.
enum OpenAPIDocument {
    /// `"code": {"description": …, "content": {"application/json": {"schema": {"$ref": schema}}}}`
    private static func response(_ code: String, _ description: String, schema: String) -> String {
        #""\#(code)": {"description": \#(quoted(description)), "content": {"application/json": {"schema": \#(reference("schemas", schema))}}}"#
    }

    /// An operation of one tag whose parameters are components, whose request body (if any)
    /// is a component schema and whose responses come from `response`, `empty` and `errors`.
    private static func operation(
        _ id: String, _ summary: String, tag: String, parameters names: [String] = [], body schema: String? = nil,
        bodyRequired: Bool = true, responses: [String]
    ) -> String {
        var fields = [
            #""operationId": "\#(id)""#, #""summary": \#(quoted(summary))"#, #""tags": ["\#(tag)"]"#,
            #""responses": {\#(responses.joined(separator: ", "))}"#,
        ]
        if !names.isEmpty { fields.append(#""parameters": [\#(names.map { reference("parameters", $0) }.joined(separator: ", "))]"#) }
        if let schema { fields.append(#""requestBody": \#(body(schema, required: bodyRequired))"#) }
        return "{" + fields.joined(separator: ", ") + "}"
    }

    /// A page of a list (`data`, `has_more`) of the component schema `item`.
    private static func page(of item: String, hasMoreRequired: Bool = true) -> String {
        let required = hasMoreRequired ? #"["data", "has_more"]"# : #"["data"]"#
        return #"""
            {"type": "object", "properties": {"data": {"type": "array", "items": \#(reference("schemas", item))}, \#
            "has_more": {"type": "boolean"}}, "required": \#(required)}
            """#
    }

    /// `"code": {"description": …}`: a response without a body.
    private static func empty(_ code: String, _ description: String) -> String {
        #""\#(code)": {"description": \#(quoted(description))}"#
    }

    /// The error responses of `codes`, each a reference to its component response.
    private static func errors(_ codes: String...) -> String {
        let names = ["400": "BadRequest", "401": "Unauthorized", "403": "Forbidden", "404": "NotFound"]
        return codes.map { #""\#($0)": \#(reference("responses", names[$0] ?? "Error"))"# }.joined(separator: ", ")
    }

    /// References to the component parameters `names`.
    private static func parameters(_ names: String...) -> String {
        names.map { reference("parameters", $0) }.joined(separator: ", ")
    }

    /// A JSON request body of the component schema `schema`.
    private static func body(_ schema: String, required: Bool) -> String {
        #"{"required": \#(required), "content": {"application/json": {"schema": \#(reference("schemas", schema))}}}"#
    }

    private static func reference(_ kind: String, _ name: String) -> String {
        ##"{"$ref": "#/components/\##(kind)/\##(name)"}"##
    }

    /// `text` as a JSON string, quoted and escaped as every JSON Tally writes.
    private static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.write(string: text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    static let json = #"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "Tally Billing API and ingest API",
            "version": "1.0.0",
            "description": "Usage-based billing: tenants, subscriptions, usage, invoices, alerts, webhook endpoints (the Billing API), and usage ingest (`POST /v1/events` on the ingest server). Authenticate with `Authorization: Bearer` and the admin token or a tenant's API key; a tenant key sees only its own tenant. Lists page with `limit`, `starting_after` and `has_more`. Ids are lower-case UUIDs."
          },
          "servers": [
            {
              "url": "/",
              "description": "The Billing API (`billing-api serve`), TALLY_API_URL"
            }
          ],
          "security": [
            {
              "bearer": []
            }
          ],
          "tags": [
            {
              "name": "tenants"
            },
            {
              "name": "subscriptions"
            },
            {
              "name": "usage"
            },
            {
              "name": "invoices"
            },
            {
              "name": "billing runs"
            },
            {
              "name": "alerts"
            },
            {
              "name": "catalog"
            },
            {
              "name": "webhooks"
            },
            {
              "name": "stripe"
            },
            {
              "name": "ingest"
            },
            {
              "name": "health"
            }
          ],
          "paths": {
            "/v1/tenants": {
              "post": \#(operation("createTenant", "Create a tenant (admin)", tag: "tenants", parameters: ["IdempotencyKey"], body: "NewTenant", responses: [response("201", "The tenant and its first API key, shown this once.", schema: "TenantCreated"), errors("400", "401", "403", "default")]))
            },
            "/v1/tenants/{tenant_id}": {
              "get": \#(operation("getTenant", "A tenant", tag: "tenants", parameters: ["TenantID"], responses: [response("200", "The tenant.", schema: "Tenant"), errors("401", "404", "default")])),
              "patch": \#(operation("updateTenant", "Change a tenant's name, billing email or (admin) tax rate", tag: "tenants", parameters: ["TenantID", "IdempotencyKey"], body: "TenantChange", responses: [response("200", "The tenant.", schema: "Tenant"), errors("400", "401", "403", "404", "default")]))
            },
            "/v1/tenants/{tenant_id}/api-keys": {
              "get": \#(operation("listAPIKeys", "The tenant's API keys (never their secrets)", tag: "tenants", parameters: ["TenantID", "Limit", "StartingAfter"], responses: [response("200", "A page of keys.", schema: "APIKeyPage"), errors("400", "401", "404", "default")])),
              "post": {
                "operationId": "issueAPIKey",
                "summary": "Issue a new key (rotation)",
                "tags": ["tenants"],
                "responses": {
                  \#(response("201", "The key, shown this once.", schema: "APIKeyCreated")),
                  \#(errors("400", "401", "404", "default"))
                },
                "parameters": [\#(parameters("IdempotencyKey", "TenantID"))],
                "requestBody": {
                  "required": false,
                  "content": {
                    "application/json": {
                      "schema": {
                        "type": "object",
                        "additionalProperties": false,
                        "properties": {
                          "revoke_others": {
                            "type": "boolean"
                          }
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/tenants/{tenant_id}/api-keys/{key_id}": {
              "delete": {
                "operationId": "revokeAPIKey",
                "summary": "Revoke a key",
                "tags": ["tenants"],
                "responses": {
                  "204": {
                    "description": "Revoked."
                  },
                  \#(errors("401", "404", "default"))
                },
                "parameters": [
                  \#(parameters("IdempotencyKey")),
                  \#(parameters("TenantID")),
                  {
                    "name": "key_id",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "format": "uuid"
                    },
                    "description": "The key."
                  }
                ]
              }
            },
            "/v1/tenants/{tenant_id}/payment-methods": {
              "get": \#(operation("listPaymentMethods", "Cards as Stripe reports them, all of them", tag: "tenants", parameters: ["TenantID"], responses: [response("200", "The cards.", schema: "PaymentMethodPage"), errors("400", "401", "404", "default")]))
            },
            "/v1/subscriptions": {
              "post": {
                "operationId": "createSubscription",
                "parameters": [\#(parameters("IdempotencyKey"))],
                "summary": "Subscribe a tenant to a plan",
                "tags": ["subscriptions"],
                "responses": {
                  "201": {
                    "description": "The subscription.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Subscription"
                        }
                      }
                    },
                    "links": {
                      "ChangePlan": {
                        "operationId": "changePlan",
                        "parameters": {
                          "subscription_id": "$response.body#/id"
                        }
                      },
                      "CancelSubscription": {
                        "operationId": "cancelSubscription",
                        "parameters": {
                          "subscription_id": "$response.body#/id"
                        }
                      }
                    }
                  },
                  \#(errors("409", "400", "401", "403", "404", "default"))
                },
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewSubscription"
                      },
                      "example": {
                        "plan": "starter"
                      }
                    }
                  }
                }
              },
              "get": \#(operation("listSubscriptions", "A tenant's subscriptions", tag: "subscriptions", parameters: ["TenantIDQuery", "Limit", "StartingAfter"], responses: [response("200", "A page of subscriptions.", schema: "SubscriptionPage"), errors("400", "401", "404", "default")]))
            },
            "/v1/subscriptions/{subscription_id}/change": {
              "post": \#(operation("changePlan", "Change the plan (upgrade now or at `at`, downgrade at the next period; before a scheduled subscription starts, the plan it starts on)", tag: "subscriptions", parameters: ["SubscriptionID", "IdempotencyKey"], body: "PlanChange", responses: [response("200", "The subscription.", schema: "Subscription"), errors("409", "400", "401", "403", "404", "default")]))
            },
            "/v1/subscriptions/{subscription_id}/cancel": {
              "post": \#(operation("cancelSubscription", "Cancel now, at `at`, or at the end of the period", tag: "subscriptions", parameters: ["SubscriptionID", "IdempotencyKey"], body: "Cancellation", bodyRequired: false, responses: [response("200", "The subscription.", schema: "Subscription"), errors("409", "400", "401", "403", "404", "default")]))
            },
            "/v1/usage": {
              "get": {
                "operationId": "getUsage",
                "summary": "Each metric's value against the plan over [from, to), or the current period",
                "tags": ["usage"],
                "responses": {
                  \#(response("200", "The usage.", schema: "Usage")),
                  \#(errors("400", "401", "404", "422", "default"))
                },
                "parameters": [
                  \#(parameters("TenantIDQuery")),
                  {
                    "name": "from",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "date-time"
                    },
                    "description": "Start of the range (with `to`); both absent: the current period."
                  },
                  {
                    "name": "to",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "date-time"
                    },
                    "description": "End of the range, exclusive."
                  }
                ]
              }
            },
            "/v1/usage/history": {
              "get": {
                "operationId": "getUsageHistory",
                "summary": "A series per metric per hour or day",
                "tags": ["usage"],
                "responses": {
                  \#(response("200", "The series.", schema: "UsageHistory")),
                  \#(errors("400", "401", "404", "default"))
                },
                "parameters": [
                  \#(parameters("TenantIDQuery")),
                  {
                    "name": "metric",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "pattern": "^[a-z][a-z0-9_]{0,99}$"
                    },
                    "description": "One metric only (an empty value means all)."
                  },
                  {
                    "name": "range",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "enum": [
                        "current_period",
                        "last_30_days",
                        "last_3_months",
                        "last_6_months"
                      ],
                      "default": "current_period"
                    },
                    "description": "The range."
                  },
                  {
                    "name": "granularity",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "enum": [
                        "hour",
                        "day"
                      ],
                      "default": "day"
                    },
                    "description": "The bucket size."
                  }
                ]
              }
            },
            "/v1/usage/export.csv": {
              "get": {
                "operationId": "exportUsage",
                "summary": "One CSV row per metric and UTC day",
                "tags": ["usage"],
                "responses": {
                  "200": {
                    "description": "tenant_id,date,metric,aggregation,value rows.",
                    "content": {
                      "text/csv": {
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  },
                  \#(errors("400", "401", "404", "default"))
                },
                "parameters": [
                  \#(parameters("TenantIDQuery")),
                  {
                    "name": "from",
                    "in": "query",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "format": "date"
                    },
                    "description": "First day (UTC)."
                  },
                  {
                    "name": "to",
                    "in": "query",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "format": "date"
                    },
                    "description": "Day after the last (UTC)."
                  }
                ]
              }
            },
            "/v1/invoices": {
              "get": {
                "operationId": "listInvoices",
                "summary": "Invoices, newest period first",
                "tags": ["invoices"],
                "responses": {
                  \#(response("200", "A page of invoices.", schema: "InvoicePage")),
                  \#(errors("400", "401", "404", "default"))
                },
                "parameters": [
                  {
                    "name": "tenant_id",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "uuid"
                    },
                    "description": "The tenant; the admin may omit it to list every tenant's."
                  },
                  {
                    "name": "status",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "enum": [
                        "open",
                        "paid",
                        "void",
                        "uncollectible"
                      ]
                    },
                    "description": "Only this status."
                  },
                  {
                    "name": "from",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "date-time"
                    },
                    "description": "Issued at or after."
                  },
                  {
                    "name": "to",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "date-time"
                    },
                    "description": "Issued before."
                  },
                  \#(parameters("Limit", "StartingAfter"))
                ]
              }
            },
            "/v1/invoices/upcoming": {
              "get": {
                "operationId": "getUpcomingInvoice",
                "summary": "What the open period would bill now (or at `at`)",
                "tags": ["invoices"],
                "responses": {
                  \#(response("200", "The upcoming invoice.", schema: "UpcomingInvoice")),
                  \#(errors("400", "401", "404", "422", "default"))
                },
                "parameters": [
                  \#(parameters("TenantIDQuery")),
                  {
                    "name": "at",
                    "in": "query",
                    "required": false,
                    "schema": {
                      "type": "string",
                      "format": "date-time"
                    },
                    "description": "The instant; default now."
                  }
                ]
              }
            },
            "/v1/invoices/{invoice_id}": {
              "get": \#(operation("getInvoice", "An invoice", tag: "invoices", parameters: ["InvoiceID"], responses: [response("200", "The invoice.", schema: "Invoice"), errors("401", "404", "default")]))
            },
            "/v1/invoices/{invoice_id}.pdf": {
              "get": {
                "operationId": "getInvoicePDF",
                "summary": "An invoice as a PDF",
                "tags": ["invoices"],
                "responses": {
                  "200": {
                    "description": "The PDF.",
                    "content": {
                      "application/pdf": {
                        "schema": {
                          "type": "string",
                          "format": "binary"
                        }
                      }
                    }
                  },
                  \#(errors("401", "404", "default"))
                },
                "parameters": [\#(parameters("InvoiceID"))]
              }
            },
            "/v1/billing-runs": {
              "post": \#(operation("createBillingRun", "Issue every invoice due at `as_of` (admin)", tag: "billing runs", parameters: ["IdempotencyKey"], body: "NewBillingRun", bodyRequired: false, responses: [response("202", "The run, planned.", schema: "BillingRun"), errors("400", "401", "403", "404", "default")])),
              "get": \#(operation("listBillingRuns", "Billing runs, newest first (admin)", tag: "billing runs", parameters: ["Limit", "StartingAfter"], responses: [response("200", "A page of runs.", schema: "BillingRunPage"), errors("400", "401", "403", "default")]))
            },
            "/v1/billing-runs/{run_id}": {
              "get": {
                "operationId": "getBillingRun",
                "summary": "A billing run's progress (admin)",
                "tags": ["billing runs"],
                "responses": {
                  \#(response("200", "The run.", schema: "BillingRun")),
                  \#(errors("401", "403", "404", "default"))
                },
                "parameters": [
                  {
                    "name": "run_id",
                    "in": "path",
                    "required": true,
                    "schema": {
                      "type": "string",
                      "format": "uuid"
                    },
                    "description": "The run."
                  }
                ]
              }
            },
            "/v1/metrics": {
              "post": \#(operation("putMetric", "Create a billable metric (201), or change its name and unit (200); its aggregation only while no plan charges it and no usage is recorded (409) (admin)", tag: "catalog", parameters: ["IdempotencyKey"], body: "NewMetric", responses: [response("201", "The metric, created.", schema: "Metric"), response("200", "The metric, changed.", schema: "Metric"), errors("400", "401", "403", "default")])),
              "get": \#(operation("listMetrics", "The billable metrics", tag: "catalog", responses: [response("200", "Every metric, in one page.", schema: "MetricPage"), errors("401", "default")]))
            },
            "/v1/metrics/{metric_code}": {
              "get": \#(operation("getMetric", "A billable metric", tag: "catalog", parameters: ["MetricCode"], responses: [response("200", "The metric.", schema: "Metric"), errors("401", "404", "default")]))
            },
            "/v1/plans": {
              "post": \#(operation("createPlan", "Create a plan: its version 1 (admin); 409 when the code exists", tag: "catalog", parameters: ["IdempotencyKey"], body: "NewPlan", responses: [response("201", "The plan's version 1.", schema: "PlanVersion"), errors("400", "401", "403", "default")])),
              "get": \#(operation("listPlans", "Every plan with its versions", tag: "catalog", responses: [response("200", "Every plan, in one page.", schema: "PlanPage"), errors("401", "default")]))
            },
            "/v1/plans/{plan_code}": {
              "get": \#(operation("getPlan", "A plan with all its versions", tag: "catalog", parameters: ["PlanCode"], responses: [response("200", "The plan.", schema: "Plan"), errors("401", "404", "default")]))
            },
            "/v1/plans/{plan_code}/versions": {
              "post": \#(operation("createPlanVersion", "The plan's next version: new subscriptions take it, existing ones keep theirs (admin); 409 when archived", tag: "catalog", parameters: ["PlanCode", "IdempotencyKey"], body: "NewPlanVersion", responses: [response("201", "The new version.", schema: "PlanVersion"), errors("400", "401", "403", "404", "default")]))
            },
            "/v1/plans/{plan_code}/versions/{version}": {
              "get": \#(operation("getPlanVersion", "One version of a plan", tag: "catalog", parameters: ["PlanCode", "PlanVersionNumber"], responses: [response("200", "The version.", schema: "PlanVersion"), errors("401", "404", "default")]))
            },
            "/v1/plans/{plan_code}/migrations": {
              "post": \#(operation("migratePlan", "Move subscriptions from one version to another from their next period start; dry_run lists them with the price difference at the usage so far (admin)", tag: "catalog", parameters: ["PlanCode", "IdempotencyKey"], body: "PlanMigration", responses: [response("200", "What moved (or would).", schema: "PlanMigrationOutcome"), errors("400", "401", "403", "404", "default")]))
            },
            "/v1/plans/{plan_code}/archive": {
              "post": \#(operation("archivePlan", "Close a plan to new subscriptions; those on it keep it (admin)", tag: "catalog", parameters: ["PlanCode", "IdempotencyKey"], responses: [response("200", "The plan.", schema: "Plan"), errors("401", "403", "404", "default")]))
            },
            "/v1/alerts": {
              "post": {
                "operationId": "createAlert",
                "parameters": [\#(parameters("IdempotencyKey"))],
                "summary": "Create a usage alert",
                "tags": ["alerts"],
                "responses": {
                  "201": {
                    "description": "The alert.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/Alert"
                        }
                      }
                    },
                    "links": {
                      "GetAlert": {
                        "operationId": "getAlert",
                        "parameters": {
                          "alert_id": "$response.body#/id"
                        }
                      },
                      "DeleteAlert": {
                        "operationId": "deleteAlert",
                        "parameters": {
                          "alert_id": "$response.body#/id"
                        }
                      }
                    }
                  },
                  \#(errors("409", "400", "401", "404", "default"))
                },
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewAlert"
                      },
                      "example": {
                        "metric": "api_calls",
                        "kind": "quota",
                        "threshold_percentage": "80",
                        "channels": [
                          "email"
                        ]
                      }
                    }
                  }
                }
              },
              "get": \#(operation("listAlerts", "A tenant's alerts", tag: "alerts", parameters: ["TenantIDQuery", "Limit", "StartingAfter"], responses: [response("200", "A page of alerts.", schema: "AlertPage"), errors("400", "401", "404", "default")]))
            },
            "/v1/alerts/{alert_id}": {
              "get": \#(operation("getAlert", "An alert", tag: "alerts", parameters: ["AlertID"], responses: [response("200", "The alert.", schema: "Alert"), errors("401", "404", "default")])),
              "delete": \#(operation("deleteAlert", "Delete an alert", tag: "alerts", parameters: ["AlertID", "IdempotencyKey"], responses: [empty("204", "Deleted."), errors("401", "404", "default")]))
            },
            "/v1/webhook-endpoints": {
              "post": {
                "operationId": "createWebhookEndpoint",
                "parameters": [\#(parameters("IdempotencyKey"))],
                "summary": "Add a webhook endpoint",
                "tags": ["webhooks"],
                "responses": {
                  "201": {
                    "description": "The endpoint and its signing secret, shown this once.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "$ref": "#/components/schemas/WebhookEndpointCreated"
                        }
                      }
                    },
                    "links": {
                      "GetWebhookEndpoint": {
                        "operationId": "getWebhookEndpoint",
                        "parameters": {
                          "endpoint_id": "$response.body#/id"
                        }
                      },
                      "UpdateWebhookEndpoint": {
                        "operationId": "updateWebhookEndpoint",
                        "parameters": {
                          "endpoint_id": "$response.body#/id"
                        }
                      },
                      "RotateWebhookSecret": {
                        "operationId": "rotateWebhookSecret",
                        "parameters": {
                          "endpoint_id": "$response.body#/id"
                        }
                      },
                      "DeleteWebhookEndpoint": {
                        "operationId": "deleteWebhookEndpoint",
                        "parameters": {
                          "endpoint_id": "$response.body#/id"
                        }
                      }
                    }
                  },
                  \#(errors("409", "400", "401", "404", "default"))
                },
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "$ref": "#/components/schemas/NewWebhookEndpoint"
                      },
                      "example": {
                        "url": "http://127.0.0.1:9/tally",
                        "description": "contract test"
                      }
                    }
                  }
                }
              },
              "get": \#(operation("listWebhookEndpoints", "A tenant's webhook endpoints", tag: "webhooks", parameters: ["TenantIDQuery", "Limit", "StartingAfter"], responses: [response("200", "A page of endpoints.", schema: "WebhookEndpointPage"), errors("400", "401", "404", "default")]))
            },
            "/v1/webhook-endpoints/{endpoint_id}": {
              "get": \#(operation("getWebhookEndpoint", "A webhook endpoint", tag: "webhooks", parameters: ["EndpointID"], responses: [response("200", "The endpoint.", schema: "WebhookEndpoint"), errors("401", "404", "default")])),
              "patch": \#(operation("updateWebhookEndpoint", "Change a webhook endpoint", tag: "webhooks", parameters: ["EndpointID", "IdempotencyKey"], body: "WebhookEndpointChange", responses: [response("200", "The endpoint.", schema: "WebhookEndpoint"), errors("400", "401", "404", "default")])),
              "delete": \#(operation("deleteWebhookEndpoint", "Delete a webhook endpoint", tag: "webhooks", parameters: ["EndpointID", "IdempotencyKey"], responses: [empty("204", "Deleted."), errors("401", "404", "default")]))
            },
            "/v1/webhook-endpoints/{endpoint_id}/rotate-secret": {
              "post": {
                "operationId": "rotateWebhookSecret",
                "summary": "A new signing secret (the old one signs too for 24 h)",
                "tags": ["webhooks"],
                "responses": {
                  "200": {
                    "description": "The new secret.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "properties": {
                            "id": {
                              "type": "string",
                              "format": "uuid"
                            },
                            "secret": {
                              "type": "string"
                            },
                            "previous_secret_valid_for_seconds": {
                              "type": "integer"
                            }
                          },
                          "required": [
                            "id",
                            "secret"
                          ]
                        }
                      }
                    }
                  },
                  \#(errors("401", "404", "default"))
                },
                "parameters": [\#(parameters("IdempotencyKey", "EndpointID"))]
              }
            },
            "/v1/stripe/webhook": {
              "post": {
                "operationId": "receiveStripeWebhook",
                "summary": "Stripe's events, verified by Stripe-Signature",
                "tags": ["stripe"],
                "responses": {
                  "200": {
                    "description": "Stored (or a duplicate).",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "properties": {
                            "received": {
                              "type": "boolean"
                            },
                            "duplicate": {
                              "type": "boolean"
                            }
                          }
                        }
                      }
                    }
                  },
                  \#(errors("400", "404", "default"))
                },
                "parameters": [
                  {
                    "name": "Stripe-Signature",
                    "in": "header",
                    "required": true,
                    "schema": {
                      "type": "string"
                    }
                  }
                ],
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "type": "object"
                      }
                    }
                  }
                },
                "security": []
              }
            },
            "/healthz": {
              "get": {
                "operationId": "liveness",
                "summary": "Liveness",
                "tags": ["health"],
                "responses": {
                  \#(response("200", "Alive.", schema: "Status")),
                  \#(errors("default"))
                },
                "security": []
              }
            },
            "/metrics": {
              "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics: requests by route and status, durations, 401s",
                "tags": ["health"],
                "responses": {
                  "200": {
                    "description": "Prometheus text exposition format 0.0.4.",
                    "content": {
                      "text/plain": {
                        "schema": {
                          "type": "string"
                        }
                      }
                    }
                  }
                },
                "security": []
              }
            },
            "/readyz": {
              "get": {
                "operationId": "readiness",
                "summary": "Readiness (a database round trip)",
                "tags": ["health"],
                "responses": {
                  "200": {
                    "description": "Ready.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object"
                        }
                      }
                    }
                  },
                  \#(response("503", "Not ready.", schema: "Status")),
                  \#(errors("default"))
                },
                "security": []
              }
            },
            "/openapi.json": {
              "get": {
                "operationId": "openAPIDocument",
                "summary": "This document",
                "tags": ["health"],
                "responses": {
                  "200": {
                    "description": "OpenAPI 3.1.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object"
                        }
                      }
                    }
                  }
                },
                "security": []
              }
            },
            "/v1/events": {
              "servers": [
                {
                  "url": "{ingest}",
                  "description": "The ingest API (`producer serve`), TALLY_INGEST_URL",
                  "variables": {
                    "ingest": {
                      "default": "http://127.0.0.1:8080"
                    }
                  }
                }
              ],
              "post": {
                "operationId": "ingestEvents",
                "summary": "Send usage: one event, a JSON array, or NDJSON; 202 once durable",
                "tags": ["ingest"],
                "responses": {
                  "202": {
                    "description": "Accepted and durable.",
                    "content": {
                      "application/json": {
                        "schema": {
                          "type": "object",
                          "properties": {
                            "accepted": {
                              "type": "integer"
                            },
                            "durability": {
                              "type": "string",
                              "enum": [
                                "confirmed",
                                "spooled"
                              ]
                            }
                          },
                          "required": [
                            "accepted"
                          ]
                        }
                      }
                    }
                  },
                  \#(errors("413", "429", "503", "400", "401", "403", "default"))
                },
                "description": "A request with any invalid event is refused whole; `error.details` lists every offending index and field. Bodies over 8 MiB get 413.",
                "requestBody": {
                  "required": true,
                  "content": {
                    "application/json": {
                      "schema": {
                        "oneOf": [
                          {
                            "$ref": "#/components/schemas/UsageEvent"
                          },
                          {
                            "type": "array",
                            "items": {
                              "$ref": "#/components/schemas/UsageEvent"
                            }
                          }
                        ]
                      }
                    },
                    "application/x-ndjson": {
                      "schema": {
                        "type": "string"
                      }
                    }
                  }
                }
              }
            }
          },
          "components": {
            "securitySchemes": {
              "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The admin token or a tenant API key (`tally_` + 64 hex digits)."
              }
            },
            "schemas": {
              "Error": {
                "type": "object",
                "properties": {
                  "error": {
                    "type": "object",
                    "properties": {
                      "code": {
                        "type": "string"
                      },
                      "message": {
                        "type": "string"
                      },
                      "field": {
                        "type": [
                          "string",
                          "null"
                        ]
                      },
                      "details": {
                        "type": "array",
                        "items": {
                          "type": "object",
                          "properties": {
                            "field": {
                              "type": "string"
                            },
                            "message": {
                              "type": "string"
                            }
                          }
                        }
                      }
                    },
                    "required": [
                      "code",
                      "message"
                    ]
                  }
                },
                "required": [
                  "error"
                ]
              },
              "Tenant": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "name": {
                    "type": "string"
                  },
                  "billing_email": {
                    "type": "string"
                  },
                  "tax_rate_bps": {
                    "type": "integer"
                  },
                  "currency": {
                    "type": "string"
                  },
                  "payment_provider": {
                    "type": "string",
                    "enum": [
                      "stripe",
                      "none"
                    ]
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time"
                  }
                },
                "required": [
                  "id",
                  "name",
                  "billing_email",
                  "tax_rate_bps",
                  "currency",
                  "payment_provider",
                  "created_at"
                ]
              },
              "NewTenant": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200
                  },
                  "billing_email": {
                    "type": "string",
                    "format": "email"
                  },
                  "tax_rate_bps": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 10000
                  },
                  "payment_provider": {
                    "type": "string",
                    "enum": [
                      "stripe",
                      "none"
                    ]
                  }
                },
                "required": [
                  "name",
                  "billing_email"
                ]
              },
              "TenantChange": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "name": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 200
                  },
                  "billing_email": {
                    "type": "string",
                    "format": "email"
                  },
                  "tax_rate_bps": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 10000,
                    "description": "Admin token only (403 for a tenant key)."
                  }
                }
              },
              "APIKey": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "prefix": {
                    "type": "string"
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "revoked_at": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "format": "date-time"
                  },
                  "last_used_at": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "format": "date-time"
                  }
                },
                "required": [
                  "id",
                  "prefix",
                  "created_at"
                ]
              },
              "PaymentMethod": {
                "type": "object",
                "properties": {
                  "provider_id": {
                    "type": "string"
                  },
                  "brand": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "last4": {
                    "type": [
                      "string",
                      "null"
                    ]
                  }
                }
              },
              "Subscription": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "status": {
                    "type": "string",
                    "enum": [
                      "scheduled",
                      "trialing",
                      "active",
                      "canceled"
                    ]
                  },
                  "plan": {
                    "type": "string"
                  },
                  "plan_version": {
                    "type": "integer",
                    "description": "The catalog version of the plan in force."
                  },
                  "interval": {
                    "type": "string",
                    "enum": [
                      "month",
                      "year"
                    ]
                  },
                  "started_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "anchor": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "trial_end": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "ends_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "current_period": {
                    "type": "object",
                    "properties": {
                      "start": {
                        "type": "string",
                        "format": "date-time"
                      },
                      "end": {
                        "type": "string",
                        "format": "date-time"
                      }
                    },
                    "required": [
                      "start",
                      "end"
                    ]
                  },
                  "changes": {
                    "type": "array",
                    "items": {
                      "type": "object",
                      "properties": {
                        "plan": {
                          "type": "string"
                        },
                        "plan_version": {
                          "type": "integer"
                        },
                        "effective_at": {
                          "type": "string",
                          "format": "date-time"
                        },
                        "kind": {
                          "type": "string",
                          "description": "start, upgrade, downgrade, or migration (another version of the same plan)."
                        }
                      },
                      "required": [
                        "plan",
                        "effective_at",
                        "kind"
                      ]
                    }
                  }
                },
                "required": [
                  "id",
                  "tenant_id",
                  "status",
                  "plan",
                  "started_at",
                  "anchor",
                  "changes"
                ]
              },
              "NewSubscription": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "plan": {
                    "type": "string",
                    "description": "A catalog plan's code (GET /v1/plans lists them); the seeded ones are starter, professional and enterprise.",
                    "pattern": "^[a-z][a-z0-9_-]{0,63}$",
                    "examples": [
                      "starter",
                      "professional",
                      "enterprise"
                    ]
                  },
                  "start": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "trial_days": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 365
                  }
                },
                "required": [
                  "plan"
                ]
              },
              "PlanChange": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "plan": {
                    "type": "string",
                    "description": "A catalog plan's code (GET /v1/plans lists them); the seeded ones are starter, professional and enterprise.",
                    "pattern": "^[a-z][a-z0-9_-]{0,63}$",
                    "examples": [
                      "starter",
                      "professional",
                      "enterprise"
                    ]
                  },
                  "at": {
                    "type": "string",
                    "format": "date-time"
                  }
                },
                "required": [
                  "plan"
                ]
              },
              "Cancellation": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "at_period_end": {
                    "type": "boolean"
                  }
                }
              },
              "BillingRun": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "as_of": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "status": {
                    "type": "string",
                    "enum": [
                      "running",
                      "completed"
                    ]
                  },
                  "due": {
                    "type": "integer"
                  },
                  "issued": {
                    "type": "integer"
                  },
                  "already_issued": {
                    "type": "integer",
                    "description": "Periods another run had invoiced by their turn (runs at the same time): counted as issued by that run, not this one."
                  },
                  "skipped": {
                    "type": "integer"
                  },
                  "failed": {
                    "type": "integer"
                  },
                  "pending": {
                    "type": "integer"
                  }
                },
                "required": [
                  "id",
                  "as_of",
                  "status",
                  "due",
                  "issued",
                  "already_issued",
                  "skipped",
                  "failed",
                  "pending"
                ]
              },
              "NewBillingRun": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "as_of": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  }
                }
              },
              "InvoiceLine": {
                "type": "object",
                "properties": {
                  "kind": {
                    "type": "string",
                    "enum": [
                      "base",
                      "overage",
                      "adjustment"
                    ]
                  },
                  "metric": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "description": {
                    "type": "string"
                  },
                  "quantity": {
                    "$ref": "#/components/schemas/DecimalText"
                  },
                  "unit_price_cents": {
                    "$ref": "#/components/schemas/DecimalText"
                  },
                  "amount_cents": {
                    "type": "integer"
                  }
                },
                "required": [
                  "kind",
                  "description",
                  "quantity",
                  "unit_price_cents",
                  "amount_cents"
                ]
              },
              "Invoice": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "number": {
                    "type": "string",
                    "pattern": "^INV-[0-9]{4}-[0-9]{6}$"
                  },
                  "status": {
                    "type": "string",
                    "enum": [
                      "open",
                      "paid",
                      "void",
                      "uncollectible"
                    ]
                  },
                  "kind": {
                    "type": "string",
                    "enum": [
                      "period",
                      "adjustment"
                    ]
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "subscription_id": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "format": "uuid"
                  },
                  "currency": {
                    "type": "string"
                  },
                  "period_start": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "period_end": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "subtotal_cents": {
                    "type": "integer"
                  },
                  "tax_rate_bps": {
                    "type": "integer"
                  },
                  "tax_cents": {
                    "type": "integer"
                  },
                  "total_cents": {
                    "type": "integer"
                  },
                  "issued_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "due_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "lines": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/InvoiceLine"
                    }
                  },
                  "stripe": {
                    "type": "object",
                    "properties": {
                      "status": {
                        "type": "string",
                        "enum": [
                          "pending",
                          "synced",
                          "failed"
                        ]
                      }
                    },
                    "required": [
                      "status"
                    ]
                  }
                },
                "required": [
                  "id",
                  "number",
                  "status",
                  "tenant_id",
                  "currency",
                  "period_start",
                  "period_end",
                  "subtotal_cents",
                  "tax_cents",
                  "total_cents",
                  "lines"
                ]
              },
              "UpcomingInvoice": {
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "subscription_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "plan": {
                    "type": "string"
                  },
                  "currency": {
                    "type": "string"
                  },
                  "period_start": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "period_end": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "as_of": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "subtotal_cents": {
                    "type": "integer"
                  },
                  "tax_rate_bps": {
                    "type": "integer"
                  },
                  "tax_cents": {
                    "type": "integer"
                  },
                  "total_cents": {
                    "type": "integer"
                  },
                  "lines": {
                    "type": "array",
                    "items": {
                      "$ref": "#/components/schemas/InvoiceLine"
                    }
                  }
                },
                "required": [
                  "tenant_id",
                  "subscription_id",
                  "plan",
                  "period_start",
                  "period_end",
                  "as_of",
                  "subtotal_cents",
                  "tax_cents",
                  "total_cents",
                  "lines"
                ]
              },
              "Usage": {
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "from": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "to": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "plan": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "subscription_id": {
                    "type": [
                      "string",
                      "null"
                    ],
                    "format": "uuid"
                  },
                  "period": {
                    "type": "object",
                    "properties": {
                      "start": {
                        "type": "string",
                        "format": "date-time"
                      },
                      "end": {
                        "type": "string",
                        "format": "date-time"
                      },
                      "kind": {
                        "type": "string",
                        "enum": [
                          "billing",
                          "trial",
                          "calendar_month"
                        ]
                      }
                    },
                    "required": [
                      "start",
                      "end",
                      "kind"
                    ]
                  },
                  "metrics": {
                    "type": "array",
                    "items": {
                      "type": "object",
                      "properties": {
                        "metric": {
                          "type": "string"
                        },
                        "aggregation": {
                          "type": "string",
                          "enum": [
                            "sum",
                            "count",
                            "max",
                            "latest",
                            "unique_count"
                          ]
                        },
                        "value": {
                          "$ref": "#/components/schemas/DecimalText"
                        },
                        "quota": {
                          "type": [
                            "string",
                            "null"
                          ]
                        },
                        "unlimited": {
                          "type": "boolean"
                        },
                        "enforcement": {
                          "type": [
                            "string",
                            "null"
                          ],
                          "enum": [
                            "hard",
                            "soft",
                            null
                          ]
                        },
                        "percent": {
                          "type": [
                            "integer",
                            "null"
                          ]
                        }
                      },
                      "required": [
                        "metric",
                        "aggregation",
                        "value",
                        "unlimited"
                      ]
                    }
                  }
                },
                "required": [
                  "tenant_id",
                  "from",
                  "to",
                  "metrics"
                ]
              },
              "UsageHistory": {
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "range": {
                    "type": "string"
                  },
                  "granularity": {
                    "type": "string",
                    "enum": [
                      "hour",
                      "day"
                    ]
                  },
                  "from": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "to": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "series": {
                    "type": "array",
                    "items": {
                      "type": "object",
                      "properties": {
                        "metric": {
                          "type": "string"
                        },
                        "aggregation": {
                          "type": "string"
                        },
                        "points": {
                          "type": "array",
                          "items": {
                            "type": "object",
                            "properties": {
                              "start": {
                                "type": "string",
                                "format": "date-time"
                              },
                              "value": {
                                "$ref": "#/components/schemas/DecimalText"
                              }
                            },
                            "required": [
                              "start",
                              "value"
                            ]
                          }
                        }
                      },
                      "required": [
                        "metric",
                        "aggregation",
                        "points"
                      ]
                    }
                  }
                },
                "required": [
                  "tenant_id",
                  "range",
                  "granularity",
                  "from",
                  "to",
                  "series"
                ]
              },
              "Alert": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "metric": {
                    "type": "string"
                  },
                  "kind": {
                    "type": "string",
                    "enum": [
                      "threshold",
                      "quota",
                      "anomaly"
                    ]
                  },
                  "threshold_value": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "threshold_percentage": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "channels": {
                    "type": "array",
                    "items": {
                      "type": "string",
                      "enum": [
                        "email",
                        "webhook"
                      ]
                    }
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time"
                  }
                },
                "required": [
                  "id",
                  "tenant_id",
                  "metric",
                  "kind",
                  "channels",
                  "created_at"
                ]
              },
              "NewAlert": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "metric": {
                    "type": "string",
                    "pattern": "^[a-z][a-z0-9_]{0,99}$"
                  },
                  "kind": {
                    "type": "string",
                    "enum": [
                      "threshold",
                      "quota",
                      "anomaly"
                    ]
                  },
                  "threshold_value": {
                    "type": [
                      "string",
                      "number"
                    ]
                  },
                  "threshold_percentage": {
                    "type": [
                      "string",
                      "number"
                    ]
                  },
                  "channels": {
                    "type": "array",
                    "items": {
                      "type": "string",
                      "enum": [
                        "email",
                        "webhook"
                      ]
                    }
                  }
                },
                "required": [
                  "metric",
                  "kind"
                ]
              },
              "WebhookEndpoint": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "url": {
                    "type": "string"
                  },
                  "events": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    }
                  },
                  "active": {
                    "type": "boolean"
                  },
                  "description": {
                    "type": [
                      "string",
                      "null"
                    ]
                  },
                  "created_at": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "updated_at": {
                    "type": "string",
                    "format": "date-time"
                  }
                },
                "required": [
                  "id",
                  "tenant_id",
                  "url",
                  "events",
                  "active",
                  "created_at",
                  "updated_at"
                ]
              },
              "NewWebhookEndpoint": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "url": {
                    "type": "string",
                    "format": "uri"
                  },
                  "events": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    }
                  },
                  "description": {
                    "type": "string",
                    "maxLength": 500
                  }
                },
                "required": [
                  "url"
                ]
              },
              "WebhookEndpointChange": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "url": {
                    "type": "string",
                    "format": "uri"
                  },
                  "events": {
                    "type": "array",
                    "items": {
                      "type": "string"
                    }
                  },
                  "active": {
                    "type": "boolean"
                  },
                  "description": {
                    "type": "string",
                    "maxLength": 500
                  }
                }
              },
              "UsageEvent": {
                "type": "object",
                "properties": {
                  "id": {
                    "type": "string"
                  },
                  "tenant_id": {
                    "type": "string",
                    "format": "uuid"
                  },
                  "type": {
                    "type": "string"
                  },
                  "quantity": {
                    "type": [
                      "string",
                      "number"
                    ]
                  },
                  "unit": {
                    "type": "string"
                  },
                  "time": {
                    "type": "string",
                    "format": "date-time"
                  },
                  "metadata": {
                    "type": "object"
                  }
                },
                "required": [
                  "id",
                  "type",
                  "time"
                ]
              },
              "TenantCreated": {
                "allOf": [
                  {
                    "$ref": "#/components/schemas/Tenant"
                  },
                  {
                    "type": "object",
                    "properties": {
                      "api_key": {
                        "type": "string"
                      }
                    },
                    "required": [
                      "api_key"
                    ]
                  }
                ]
              },
              "APIKeyCreated": {
                "allOf": [
                  {
                    "$ref": "#/components/schemas/APIKey"
                  },
                  {
                    "type": "object",
                    "properties": {
                      "api_key": {
                        "type": "string"
                      }
                    },
                    "required": [
                      "api_key"
                    ]
                  }
                ]
              },
              "WebhookEndpointCreated": {
                "allOf": [
                  {
                    "$ref": "#/components/schemas/WebhookEndpoint"
                  },
                  {
                    "type": "object",
                    "properties": {
                      "secret": {
                        "type": "string"
                      }
                    },
                    "required": [
                      "secret"
                    ]
                  }
                ]
              },
              "Metric": {
                "type": "object",
                "properties": {
                  "code": {"type": "string"},
                  "name": {"type": "string"},
                  "unit": {"type": ["string", "null"]},
                  "aggregation": {"type": "string", "enum": ["sum", "count", "max", "latest", "unique_count"]},
                  "field": {"type": ["string", "null"], "description": "The metadata field unique_count counts."}
                },
                "required": ["code", "name", "aggregation"]
              },
              "NewMetric": {
                "type": "object",
                "properties": {
                  "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,99}$"},
                  "name": {"type": "string", "minLength": 1, "maxLength": 200},
                  "unit": {"type": "string", "minLength": 1, "maxLength": 50},
                  "aggregation": {"type": "string", "enum": ["sum", "count", "max", "latest", "unique_count"]},
                  "field": {"type": "string", "minLength": 1, "description": "Required for unique_count, refused otherwise."}
                },
                "required": ["code"]
              },
              "MetricPage": \#(page(of: "Metric")),
              "Tier": {
                "type": "object",
                "description": "Covers (the bound before, up_to]; the last tier is open (up_to null).",
                "properties": {
                  "from": {"type": ["string", "number"], "description": "Optional: must equal the bound before (0 for the first)."},
                  "up_to": {"type": ["string", "number", "null"]},
                  "unit_price": {"type": ["string", "number"], "description": "Cents per unit, at most 6 decimals."},
                  "flat_cents": {"type": "integer", "minimum": 0}
                },
                "required": ["unit_price"]
              },
              "Charge": {
                "type": "object",
                "description": "One metric's terms: enforcement and quota (enforcement, alerts, the dashboard) and how its period value is priced (SPEC §2.1).",
                "properties": {
                  "metric": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,99}$"},
                  "enforcement": {"type": "string", "enum": ["soft", "hard"]},
                  "quota": {"type": ["string", "number", "null"]},
                  "model": {"type": "string", "enum": ["standard", "graduated", "volume", "package"]},
                  "included": {"type": ["string", "number"], "description": "standard, package: usage before anything is charged."},
                  "unit_price": {"type": ["string", "number"], "description": "standard: cents per unit above what is included."},
                  "tiers": {"type": "array", "items": \#(reference("schemas", "Tier"))},
                  "size": {"type": ["string", "number"], "description": "package: units per package."},
                  "price_cents": {"type": "integer", "minimum": 0, "description": "package: the price of a package."}
                },
                "required": ["metric"]
              },
              "NewPlanVersion": {
                "type": "object",
                "properties": {
                  "name": {"type": "string", "minLength": 1, "maxLength": 200},
                  "currency": {"type": "string", "description": "ISO 4217 (usd, eur, jpy, …); amounts are in its minor unit."},
                  "interval": {"type": "string", "enum": ["month", "year"]},
                  "base_cents": {"type": "integer", "minimum": 0},
                  "trial_days": {"type": "integer", "minimum": 0, "maximum": 730},
                  "charges": {"type": "array", "items": \#(reference("schemas", "Charge"))}
                },
                "required": ["name", "currency", "base_cents"]
              },
              "NewPlan": {
                "allOf": [
                  \#(reference("schemas", "NewPlanVersion")),
                  {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[a-z][a-z0-9_-]{0,63}$"}}, "required": ["code"]}
                ]
              },
              "PlanVersion": {
                "type": "object",
                "properties": {
                  "code": {"type": "string"},
                  "version": {"type": "integer", "minimum": 1},
                  "name": {"type": "string"},
                  "currency": {"type": "string"},
                  "interval": {"type": "string", "enum": ["month", "year"]},
                  "base_cents": {"type": "integer"},
                  "trial_days": {"type": "integer"},
                  "charges": {"type": "array", "items": {"type": "object"}},
                  "created_at": {"type": "string", "format": "date-time"},
                  "subscriptions": {"type": "integer", "description": "Subscriptions whose plan changes name this version."}
                },
                "required": ["code", "version", "name", "currency", "interval", "base_cents", "trial_days", "charges"]
              },
              "Plan": {
                "type": "object",
                "properties": {
                  "code": {"type": "string"},
                  "archived_at": {"type": ["string", "null"], "format": "date-time"},
                  "versions": {"type": "array", "items": \#(reference("schemas", "PlanVersion"))}
                },
                "required": ["code", "versions"]
              },
              "PlanPage": \#(page(of: "Plan")),
              "PlanMigration": {
                "additionalProperties": false,
                "type": "object",
                "properties": {
                  "from_version": {"type": "integer", "minimum": 1},
                  "to_version": {"type": "integer", "minimum": 1},
                  "tenant_id": {"type": "string", "format": "uuid", "description": "Only this tenant's subscription."},
                  "at": {"type": "string", "format": "date-time", "description": "As of when (default now): each subscription moves at the start of its next period after it."},
                  "dry_run": {"type": "boolean"}
                },
                "required": ["from_version", "to_version"]
              },
              "PlanMigrationOutcome": {
                "type": "object",
                "properties": {
                  "dry_run": {"type": "boolean"},
                  "moved": {"type": "array", "items": {"type": "object", "properties": {
                    "subscription_id": {"type": "string", "format": "uuid"},
                    "tenant_id": {"type": "string", "format": "uuid"},
                    "effective_at": {"type": "string", "format": "date-time"},
                    "current_charge_cents": {"type": "integer"},
                    "new_charge_cents": {"type": "integer"},
                    "difference_cents": {"type": "integer"}
                  }, "required": ["subscription_id", "tenant_id", "effective_at", "current_charge_cents", "new_charge_cents", "difference_cents"]}},
                  "skipped": {"type": "array", "items": {"type": "object", "properties": {
                    "subscription_id": {"type": "string", "format": "uuid"},
                    "reason": {"type": "string"}
                  }, "required": ["subscription_id", "reason"]}}
                },
                "required": ["dry_run", "moved", "skipped"]
              },
              "InvoicePage": \#(page(of: "Invoice")),
              "AlertPage": \#(page(of: "Alert")),
              "SubscriptionPage": \#(page(of: "Subscription")),
              "WebhookEndpointPage": \#(page(of: "WebhookEndpoint")),
              "APIKeyPage": \#(page(of: "APIKey")),
              "BillingRunPage": \#(page(of: "BillingRun")),
              "PaymentMethodPage": \#(page(of: "PaymentMethod", hasMoreRequired: false)),
              "DecimalText": {
                "description": "An exact decimal, as text.",
                "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
                "type": "string"
              },
              "Status": {
                "type": "object",
                "properties": {
                  "status": {
                    "type": "string"
                  }
                }
              }
            },
            "parameters": {
              "MetricCode": {
                "name": "metric_code",
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
                "description": "The metric's code."
              },
              "PlanCode": {
                "name": "plan_code",
                "in": "path",
                "required": true,
                "schema": {"type": "string"},
                "description": "The plan's code."
              },
              "PlanVersionNumber": {
                "name": "version",
                "in": "path",
                "required": true,
                "schema": {"type": "integer", "minimum": 1},
                "description": "The version's number."
              },
              "AlertID": {
                "name": "alert_id",
                "in": "path",
                "required": true,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The alert."
              },
              "EndpointID": {
                "name": "endpoint_id",
                "in": "path",
                "required": true,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The endpoint."
              },
              "InvoiceID": {
                "name": "invoice_id",
                "in": "path",
                "required": true,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The invoice."
              },
              "IdempotencyKey": {
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "schema": {
                  "type": "string",
                  "minLength": 1,
                  "maxLength": 255,
                  "pattern": "^[!-~]+$"
                },
                "description": "A key of your choosing (a UUID is usual) that makes a retry safe: the same request sent again with the same key within 24 hours is answered with the first answer (header `Idempotent-Replayed: true`) and done once. Only successes are kept; a request that failed may be retried with its key. The same key with another method, path or body is a 400, and a key whose first request is still running a 409."
              },
              "Limit": {
                "name": "limit",
                "in": "query",
                "required": false,
                "schema": {
                  "type": "integer",
                  "minimum": 1,
                  "maximum": 100,
                  "default": 10
                },
                "description": "Items per page."
              },
              "StartingAfter": {
                "name": "starting_after",
                "in": "query",
                "required": false,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The id of the last item of the previous page."
              },
              "SubscriptionID": {
                "name": "subscription_id",
                "in": "path",
                "required": true,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The subscription."
              },
              "TenantID": {
                "name": "tenant_id",
                "in": "path",
                "required": true,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The tenant."
              },
              "TenantIDQuery": {
                "name": "tenant_id",
                "in": "query",
                "required": false,
                "schema": {
                  "type": "string",
                  "format": "uuid"
                },
                "description": "The tenant; required with the admin token, optional (its own) with a tenant key."
              }
            },
            "responses": {
              "BadRequest": {
                "description": "A field is invalid; `field` names it.",
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              },
              "Unauthorized": {
                "description": "No or an unknown bearer token.",
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              },
              "Forbidden": {
                "description": "The token may not do this (e.g. a tenant key on an admin operation).",
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              },
              "NotFound": {
                "description": "Nothing with this id that the token may see.",
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              },
              "Error": {
                "description": "Any other error, in the same shape.",
                "content": {
                  "application/json": {
                    "schema": {
                      "$ref": "#/components/schemas/Error"
                    }
                  }
                }
              }
            }
          }
        }
        """#
}
