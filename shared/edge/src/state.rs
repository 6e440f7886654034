//! The router state every BFF uses: its own handlers' state and what the
//! edge's extractors take, each reached through axum's `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::aggregate::AggregateState;

/// A BFF's router state: its handlers' `T` (taken as `State<Arc<T>>`) and
/// the [`AggregateState`] the [`crate::Aggregate`] extractor takes. Cheap to
/// clone (two reference counts), as axum clones it for every request.
#[derive(Debug)]
pub struct BffState<T> {
    app: Arc<T>,
    aggregate: AggregateState,
}

impl<T> Clone for BffState<T> {
    fn clone(&self) -> Self {
        BffState {
            app: self.app.clone(),
            aggregate: self.aggregate.clone(),
        }
    }
}

impl<T> BffState<T> {
    /// The state of a BFF whose handlers use `app`, with `aggregate` (from
    /// [`crate::Shared::aggregate_state`]).
    pub fn new(app: T, aggregate: AggregateState) -> Self {
        BffState {
            app: Arc::new(app),
            aggregate,
        }
    }
}

impl<T> FromRef<BffState<T>> for Arc<T> {
    fn from_ref(state: &BffState<T>) -> Self {
        state.app.clone()
    }
}

impl<T> FromRef<BffState<T>> for AggregateState {
    fn from_ref(state: &BffState<T>) -> Self {
        state.aggregate.clone()
    }
}
