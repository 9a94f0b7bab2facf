//! `/docs`: the OpenAPI 3.1 document generated from the handlers, and the Swagger UI (vendored: works offline).

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "python-executor API",
        description = "Run untrusted Python in sandboxes. Wire-compatible with the original python-executor; \
                       see docs/api.md for where it deliberately differs.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::eval::eval,
        super::exec::exec_sync,
        super::exec::exec_async,
        super::executions::get,
        super::executions::kill,
        super::executions::list,
        super::executions::events,
        super::health::health,
        super::health::metrics,
    ),
    components(schemas(
        pyexec_core::ExecutionResult,
        pyexec_core::ExecutionStatus,
        pyexec_core::ExecutionConfig,
        pyexec_core::Metadata,
        pyexec_core::EvalRequest,
        pyexec_core::CodeFile,
        pyexec_core::AsyncResponse,
        pyexec_core::KillResponse,
        pyexec_core::ErrorResponse,
        pyexec_core::ExecutionPage,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "executions", description = "Run code and follow executions"),
        (name = "service", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("API key, when the server requires one (PYEXEC_API_KEYS)"))
                    .build(),
            ),
        );
    }
}

/// Routes of the UI and the document (`/docs/openapi.json`, and `/docs/doc.json` for old links).
pub fn router() -> Router<AppState> {
    let doc = ApiDoc::openapi();
    let legacy = doc.clone();
    Router::new()
        .route("/docs/doc.json", get(move || async move { Json(legacy) }))
        .merge(SwaggerUi::new("/docs").url("/docs/openapi.json", doc))
}
